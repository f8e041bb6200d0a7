"""The corpus of submissions under tests/autograder/corpus/ and how to build them.

Layout: ``corpus/correct/<name>/``, ``corpus/buggy/<name>/`` and ``corpus/students/<name>/``
each hold an ``expect.toml`` and optionally ``*.py`` files that replace the reference's.
``expect.toml`` is a variant file of :mod:`autograder.variants` (the kit's one "broken on
purpose" format, shared with the overfit calibration and the feedback's buggy variants) with
the corpus' own keys::

    description = "..."
    lose = ["iou"]            # buggy only: exactly these rubric ids must lose points
    feedback = "clamp"        # buggy only, optional: a failure message must contain this
    runner_feedback = "..."   # optional: what the sandboxed run must show instead (free text from
                              # children that hold reference code is replaced by fixed hints)
    requires_cuda = false     # optional: the bug shows only on a GPU
    representative = false    # optional: prefer this entry when the real runner grades one per rubric id

    [[edit]]                  # file, old | block, new: see autograder/variants.py

A ``students`` entry is a whole-module submission in a student's own style (every SOLUTION
block of the modules it rewrites is replaced) with several interacting mistakes. Instead of
``lose``/``feedback`` it names, per rubric id that must lose points, the phrases of which
every failed case's message must show one (the hint names the actual cause)::

    [hints]
    rpn_proposals = ["before the clip", "(height, width)"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from autograder.variants import build_variant, read_variant
from rcnn_kit.course import REFERENCE_DIR as REFERENCE_REL

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT / REFERENCE_REL
KINDS = ("correct", "buggy", "students")
#: Keys of expect.toml besides the shared ``description`` and ``[[edit]]``.
CORPUS_KEYS = ("lose", "feedback", "runner_feedback", "requires_cuda", "representative", "hints")


@dataclass(frozen=True)
class CorpusEntry:
    """One corpus submission."""

    kind: str
    name: str
    folder: Path
    description: str
    lose: tuple[str, ...] = ()
    feedback: str | None = None
    runner_feedback: str | None = None
    requires_cuda: bool = False
    representative: bool = False
    edits: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    hints: dict[str, tuple[str, ...]] = field(default_factory=dict)  # students: rubric id -> cause phrases

    @property
    def touched_modules(self) -> set[str]:
        """Modules whose file differs from the reference."""
        files = {p.stem for p in self.folder.glob("*.py")}
        return files | {Path(edit["file"]).stem for edit in self.edits}


def load_entries(kind: str) -> list[CorpusEntry]:
    """All entries of ``kind`` ("correct", "buggy" or "students"), sorted by name.

    Raises:
        ValueError: ``kind`` is unknown, or an expect.toml has unknown or missing keys.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    entries = []
    for folder in sorted((CORPUS_DIR / kind).iterdir()):
        variant = read_variant(folder / "expect.toml", name=folder.name, extra_keys=CORPUS_KEYS)
        extra = variant.extra
        hints = {rid: tuple(phrases) for rid, phrases in extra.get("hints", {}).items()}
        entries.append(
            CorpusEntry(
                kind=kind, name=folder.name, folder=folder, description=variant.description,
                lose=tuple(extra.get("lose", tuple(hints))), feedback=extra.get("feedback"),
                runner_feedback=extra.get("runner_feedback"), hints=hints,
                requires_cuda=bool(extra.get("requires_cuda", False)),
                representative=bool(extra.get("representative", False)), edits=variant.edits,
            )
        )
    return entries


def build_submission(entry: CorpusEntry, dest: Path) -> Path:
    """Write the entry's submission (reference + overlaid files + edits) to ``dest``; return it."""
    return build_variant(REFERENCE_DIR, dest, entry.edits, overlays=sorted(entry.folder.glob("*.py")),
                         where=f"{entry.kind}/{entry.name}")
