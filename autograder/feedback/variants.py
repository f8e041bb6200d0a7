"""Name a module-level mistake by re-running a probe on buggy variants of the reference.

The RPN and detector checks compare whole module outputs (proposals, losses, detections),
which no closed formula recomputes. A *variant* is a named edit of the reference
(:mod:`autograder.variants` format) that makes one known mistake: NMS before the
clip, thresholds swapped, smooth-L1 for L1, ... (``variants.toml`` beside this file). On a
failure, :class:`VariantHints` runs the same probe the check used on patched copies of the
reference, in the grader process (trusted code only), and when the student's output equals
a variant's, the hint names that mistake. Two mistakes in one function are found by trying
pairs of variants when no single one matches.

Nothing here runs for a passing case, so a correct submission is not slowed down. Patched
packages are built once per process and their outputs cached per (variants, probe, params,
inputs), so the kit's corpus tests, which grade many submissions in one process, pay once.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import shutil
import tempfile
import time
import tomllib
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from autograder.compare import rel_error
from autograder.feedback.core import Signature, join_hints, matches
from autograder.variants import EditError, edited_copy

#: The variants shipped with the kit.
VARIANTS_FILE = Path(__file__).resolve().parent / "variants.toml"
#: Longest hint of one variant (characters): two of them must fit a 300-character failure line.
MAX_HINT_CHARS = 95
#: Wall-clock seconds one :meth:`VariantHints.hint` call may spend re-running probes.
SEARCH_BUDGET_S = 15.0
#: After this many fruitless pair searches in one check, pairs are no longer tried there
#: (the student's mistake is not among the variants; do not slow the group down further).
PAIR_SEARCH_MISSES = 1
#: Prefix of probe metadata outputs, never compared.
META_PREFIX = "meta."


@dataclass(frozen=True)
class Variant:
    """A named, deliberately wrong edit of the reference and the hint for the mistake it makes.

    Attributes:
        id: unique name, e.g. ``"proposals_nms_before_clip"``.
        check: rubric id of the check whose outputs it explains.
        hint: the cause and the fix in one sentence (no hidden values).
        edits: ``[[edit]]`` tables (file, old/new or block/new), applied in order.
    """

    id: str
    check: str
    hint: str
    edits: tuple[Mapping[str, Any], ...]

    @property
    def has_block_edit(self) -> bool:
        return any("block" in edit for edit in self.edits)


def load_variants(path: Path = VARIANTS_FILE) -> dict[str, list[Variant]]:
    """``{rubric id: [Variant, ...]}`` from a variants file, in file order.

    Raises:
        ValueError: a variant lacks a field, repeats an id, or its hint is too long.
    """
    with Path(path).open("rb") as fh:
        data = tomllib.load(fh)
    by_check: dict[str, list[Variant]] = {}
    seen: set[str] = set()
    for number, raw in enumerate(data.get("variant", [])):
        where = f"{path} [[variant]] #{number + 1}"
        try:
            variant = Variant(str(raw["id"]), str(raw["check"]), str(raw["hint"]), tuple(raw["edit"]))
        except KeyError as exc:
            raise ValueError(f"{where}: missing field {exc.args[0]!r}") from None
        if variant.id in seen:
            raise ValueError(f"{where}: id {variant.id!r} repeats")
        if len(variant.hint) > MAX_HINT_CHARS or not variant.edits:
            raise ValueError(f"{where}: hint longer than {MAX_HINT_CHARS} characters, or no edit")
        seen.add(variant.id)
        by_check.setdefault(variant.check, []).append(variant)
    return by_check


_VARIANTS: dict[str, list[Variant]] | None = None


def variants_for(check: str) -> list[Variant]:
    """The shipped variants of rubric id ``check`` (loaded once)."""
    global _VARIANTS
    if _VARIANTS is None:
        _VARIANTS = load_variants()
    return list(_VARIANTS.get(check, []))


def _digest(inputs: Mapping[str, Tensor], params: Mapping[str, Any]) -> str:
    """A key for (inputs, params): names, dtypes, shapes and bytes of every tensor."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for name in sorted(inputs):
        t = inputs[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


@dataclass
class SearchMemory:
    """Variant combinations that explained a student's earlier cases, and fruitless searches."""

    found: list[tuple[str, ...]] = field(default_factory=list)
    misses: float = 0.0  # a search cut short by the time budget counts half


class VariantRunner:
    """Builds patched copies of one reference package and caches their probe outputs."""

    def __init__(self, reference_dir: Path) -> None:
        self.reference_dir = Path(reference_dir)
        self._scratch: Path | None = None  # made on the first build: a passing submission never needs one
        self._packages: dict[tuple[str, ...], ModuleType | None] = {}
        self._outputs: dict[tuple[tuple[str, ...], str, str], dict[str, Tensor] | None] = {}
        # Per student (the check's ``student`` fixture) and check: variant combinations that
        # matched before (tried first) and the number of searches that found nothing.
        self._memory: weakref.WeakKeyDictionary[object, dict[str, SearchMemory]] = weakref.WeakKeyDictionary()

    def memory(self, owner: object, check: str) -> SearchMemory:
        """What the searches for ``owner``'s outputs in ``check`` learnt so far."""
        return self._memory.setdefault(owner, {}).setdefault(check, SearchMemory())

    def package(self, combo: Sequence[Variant]) -> ModuleType | None:
        """The reference with ``combo``'s edits applied (block edits first), or None if they do not apply."""
        key = tuple(v.id for v in combo)
        if key not in self._packages:
            from rcnn_kit.impl import import_all

            ordered = sorted(combo, key=lambda v: not v.has_block_edit)
            edits = [edit for v in ordered for edit in v.edits]
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="rcnn-variants-"))  # private (0700): grader only
                atexit.register(shutil.rmtree, self._scratch, True)
            folder = self._scratch / f"v{len(self._packages)}"
            try:
                edited_copy(self.reference_dir, folder / "faster_rcnn", edits, "+".join(key))
                self._packages[key] = import_all(folder / "faster_rcnn", name=f"rcnn_variant_{len(self._packages)}")
            except (EditError, SyntaxError, ImportError):
                # The variant no longer fits the reference (or two variants conflict): it cannot
                # name a mistake here. tests/autograder/test_variants.py fails on such a variant.
                self._packages[key] = None
        return self._packages[key]

    def outputs(
        self, combo: Sequence[Variant], probe: Callable[..., Mapping[str, Tensor]], inputs: Mapping[str, Tensor],
        params: Mapping[str, Any],
    ) -> dict[str, Tensor] | None:
        """``probe(variant package, inputs, **params, device="cpu")``, cached; None when it cannot run."""
        key = (tuple(v.id for v in combo), probe.__name__, _digest(inputs, params))
        if key not in self._outputs:
            pkg = self.package(combo)
            result: dict[str, Tensor] | None = None
            if pkg is not None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        raw = probe(pkg, {k: v.clone() for k, v in inputs.items()}, **params, device="cpu")
                    result = {k: v for k, v in raw.items() if not k.startswith(META_PREFIX)}
                except Exception:  # the variant's mistake made it fail on this input: no match possible
                    result = None
            self._outputs[key] = result
        return self._outputs[key]


_RUNNERS: dict[Path, VariantRunner] = {}


def runner_for(ref: ModuleType) -> VariantRunner:
    """The (process-wide) :class:`VariantRunner` of the reference package ``ref``."""
    folder = Path(ref.__file__).resolve().parent  # type: ignore[arg-type]
    if folder not in _RUNNERS:
        _RUNNERS[folder] = VariantRunner(folder)
    return _RUNNERS[folder]


class VariantHints:
    """Hints for one failed case of a module check, from the variants of its rubric id.

    Args:
        ref: the reference package (its folder is patched).
        check: rubric id whose variants are tried.
        probe: the probe the check ran (same function on the student's and the reference's package).
        inputs: the case's inputs, as sent to the probe.
        params: the probe's keyword arguments, as sent (``device`` excluded).
        actual: the student's probe outputs.
        expected: the reference's probe outputs.
        owner: the student fixture; what matched for its earlier cases is tried first.
    """

    def __init__(
        self, ref: ModuleType, check: str, probe: Callable[..., Mapping[str, Tensor]], inputs: Mapping[str, Tensor],
        params: Mapping[str, Any], actual: Mapping[str, Tensor], expected: Mapping[str, Tensor], owner: object,
    ) -> None:
        self.runner = runner_for(ref)
        self.memory = self.runner.memory(owner, check)
        self.check, self.probe, self.inputs, self.params = check, probe, inputs, dict(params)
        self.actual, self.expected = actual, expected
        self.variants = variants_for(check)

    def _score(self, combo: Sequence[Variant], key: str) -> int | None:
        """How many outputs the combo explains, or None unless it explains ``key`` (and differs from the reference there)."""
        out = self.runner.outputs(combo, self.probe, self.inputs, self.params)
        got = self.actual.get(key)
        if out is None or key not in out or not isinstance(got, Tensor) or not matches(out[key], got):
            return None
        if key in self.expected and matches(out[key], self.expected[key]):
            return None
        return sum(
            1 for name, t in out.items()
            if isinstance(self.actual.get(name), Tensor) and matches(t, self.actual[name])  # type: ignore[arg-type]
        )

    def _changes(self, variant: Variant, key: str) -> bool:
        """Whether a single variant's output ``key`` differs from the reference's on this case."""
        out = self.runner.outputs([variant], self.probe, self.inputs, self.params)
        exp = self.expected.get(key)
        return out is not None and key in out and isinstance(exp, Tensor) and not matches(out[key], exp)

    def _distance(self, variant: Variant, key: str) -> float:
        """How far a single variant's output ``key`` is from the student's (orders the pair search)."""
        out = self.runner.outputs([variant], self.probe, self.inputs, self.params)
        got = self.actual.get(key)
        if out is None or key not in out or not isinstance(got, Tensor):
            return float("inf")
        mine = out[key]
        if mine.shape != got.shape:
            return 1.0 + abs(mine.numel() - got.numel()) / max(mine.numel(), got.numel(), 1)
        if mine.numel() == 0:
            return 0.0
        return min(rel_error(mine.double(), got.double()), 1.0)

    def hint(self, key: str, *, singles: bool = True, pairs: bool = True) -> str | None:
        """The hint of the variant (or pair) whose output ``key`` equals the student's, or None.

        What explained this student's earlier cases is tried first, then single variants
        (the one explaining most outputs wins), then pairs, the closest singles first,
        among the variants that change ``key`` on this case, within :data:`SEARCH_BUDGET_S`,
        unless earlier pair searches for this student and check found nothing
        (:data:`PAIR_SEARCH_MISSES`; a search cut short by the budget counts half).
        """
        start = time.monotonic()
        by_id = {v.id: v for v in self.variants}
        for ids in self.memory.found:  # what explained this student's earlier cases comes first
            combo = [by_id[i] for i in ids if i in by_id]
            if len(combo) == len(ids) and (len(combo) == 1 or pairs) and self._score(combo, key) is not None:
                return join_hints([v.hint for v in combo])
        best: tuple[int, list[Variant]] | None = None
        for variant in self.variants if singles else []:
            score = self._score([variant], key)
            if score is not None and (best is None or score > best[0]):
                best = (score, [variant])
        if best is None and pairs and self.memory.misses < PAIR_SEARCH_MISSES:
            # Only variants that change output `key` on this case can be part of the explanation.
            relevant = [v for v in self.variants if self._changes(v, key)]
            ranked = sorted(relevant, key=lambda v: self._distance(v, key))
            complete = True
            for i, j in sorted(itertools.combinations(range(len(ranked)), 2), key=sum):
                if time.monotonic() - start > SEARCH_BUDGET_S:
                    complete = False
                    break
                if self._score([ranked[i], ranked[j]], key) is not None:
                    best = (0, [ranked[i], ranked[j]])
                    break
            if best is None:
                self.memory.misses += 1 if complete else 0.5
        if best is None:
            return None
        self.memory.found.insert(0, tuple(v.id for v in best[1]))
        return join_hints([v.hint for v in best[1]])

    def signature(self, key: str) -> Signature:
        """Single variants for output ``key``, as a signature for :func:`autograder.compare.assert_close`."""
        return lambda actual, expected, inputs: self.hint(key, pairs=False)

    def pair_signature(self, key: str) -> Signature:
        """Pairs of variants for output ``key`` (slower: list it after the cheap signatures)."""
        return lambda actual, expected, inputs: self.hint(key, singles=False)

    def hints(self, key: str, *cheaper: Signature) -> list[Signature]:
        """``[single variants, *cheaper, pairs of variants]`` for output ``key``: the order a check lists them in."""
        return [self.signature(key), *cheaper, self.pair_signature(key)]
