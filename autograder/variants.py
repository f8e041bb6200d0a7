"""Variants of the reference broken on purpose: the one ``[[edit]]`` format of the kit.

A variant is the reference package with edits applied to its text. Its TOML file holds a
``description`` and ``[[edit]]`` blocks; other keys belong to whoever reads the file::

    description = "RPN losses zeroed (the RPN never trains)"

    [[edit]]                  # applied in order to the reference text of `file`
    file = "rpn.py"
    old = "..."               # replace this exact text (it must occur exactly once), or
    block = 0                 # replace the body of the file's block-th SOLUTION block,
    new = "..."               # re-indented to the block's BEGIN marker

Three readers share it:

- the corpus of graded submissions, ``tests/autograder/corpus/<kind>/<name>/expect.toml``
  (adds ``lose``, ``feedback``, ...; see tests/autograder/corpus_build.py);
- the overfit calibration's broken detectors, :data:`CALIBRATION_VARIANTS_DIR`
  ``/<name>.toml`` (:mod:`autograder.calibration`);
- the feedback's buggy variants, recomputed to name a student's mistake
  (``autograder/feedback/variants.toml``, one ``[[variant]]`` table per mistake with its
  ``[[variant.edit]]`` blocks; :mod:`autograder.feedback.variants`).

Edits keep a variant valid while the reference's comments and given code change; an edit
whose ``old`` text is gone fails loudly instead of silently testing nothing.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcnn_kit.course import STUDENT_MODULES
from release_tool.markers import BEGIN_SOLUTION, END_SOLUTION

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: The overfit calibration's broken variants, one ``<name>.toml`` each.
CALIBRATION_VARIANTS_DIR = Path(__file__).resolve().parent / "calibration_variants"
#: Keys every variant file may hold; readers name their own extra keys.
COMMON_KEYS = frozenset({"description", "edit"})
#: Keys of one ``[[edit]]`` block.
EDIT_KEYS = frozenset({"file", "old", "block", "new"})


class EditError(ValueError):
    """An edit is malformed or does not apply to the text it is meant for."""


@dataclass(frozen=True)
class Variant:
    """One variant: its name, description, edits and the reader's extra keys.

    Attributes:
        name: the file's stem (calibration) or folder name (corpus).
        source: the TOML file it was read from.
        description: one line, what is broken.
        edits: the ``[[edit]]`` blocks in order (``{"file", "old" | "block", "new"}``).
        extra: the other keys of the file (e.g. the corpus' ``lose``).
    """

    name: str
    source: Path
    description: str
    edits: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def read_variant(path: str | Path, name: str | None = None, extra_keys: Iterable[str] = ()) -> Variant:
    """Read one variant file.

    Args:
        path: the TOML file.
        name: the variant's name (default: the file's stem).
        extra_keys: keys besides ``description`` and ``edit`` that the caller accepts.

    Raises:
        ValueError: unknown keys, no description, or a malformed ``[[edit]]`` (the message
            names the file and the edit's number).
    """
    path = Path(path)
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    unknown = set(data) - COMMON_KEYS - set(extra_keys)
    if unknown or not isinstance(data.get("description"), str):
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} or no description string")
    edits = data.get("edit", [])
    for number, edit in enumerate(edits, start=1):
        _check_edit(edit, f"{path} edit #{number}")
    extra = {key: value for key, value in data.items() if key not in COMMON_KEYS}
    return Variant(name or path.stem, path, data["description"], tuple(edits), extra)


def _check_edit(edit: Any, where: str) -> None:
    if not isinstance(edit, Mapping) or set(edit) - EDIT_KEYS:
        raise EditError(f"{where}: an edit is a table with keys {sorted(EDIT_KEYS)}, got {edit!r}")
    if "file" not in edit or "new" not in edit or ("old" in edit) == ("block" in edit):
        raise EditError(f"{where}: an edit needs `file`, `new` and exactly one of `old` / `block`, got keys {sorted(edit)}")
    if Path(edit["file"]).stem not in STUDENT_MODULES or Path(edit["file"]).suffix != ".py":
        raise EditError(f"{where}: file must be one of the modules {STUDENT_MODULES} (.py), got {edit['file']!r}")


def calibration_variants(names: Sequence[str] | None = None) -> list[Variant]:
    """The calibration's broken variants (all, sorted by name, or the ``names`` asked for, in order).

    Raises:
        ValueError: a name that has no file in :data:`CALIBRATION_VARIANTS_DIR`.
    """
    available = {path.stem: path for path in sorted(CALIBRATION_VARIANTS_DIR.glob("*.toml"))}
    if names is None:
        names = list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; available: {', '.join(available)}")
    return [read_variant(available[n]) for n in names]


def replace_block(text: str, index: int, body: str, where: str) -> str:
    """Replace the body of the ``index``-th SOLUTION block of ``text`` by ``body`` (re-indented)."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_SOLUTION]
    if not 0 <= index < len(begins):
        raise EditError(f"{where}: block {index} does not exist (the file has {len(begins)} SOLUTION blocks)")
    start = begins[index]
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == END_SOLUTION)
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    new_body = textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", indent)
    return "".join(lines[: start + 1]) + new_body + "".join(lines[end:])


def apply_edit(text: str, edit: Mapping[str, Any], where: str) -> str:
    """Apply one ``[[edit]]`` to a file's text.

    Raises:
        EditError: the edit is malformed, its ``old`` text does not occur exactly once,
            or its block does not exist.
    """
    _check_edit(edit, where)
    if "block" in edit:
        return replace_block(text, int(edit["block"]), edit["new"], where)
    count = text.count(edit["old"])
    if count != 1:
        raise EditError(f"{where}: `old` text occurs {count} times in {edit['file']} (expected once): {edit['old']!r}")
    return text.replace(edit["old"], edit["new"])


def build_variant(
    reference_dir: str | Path, dest: str | Path, edits: Sequence[Mapping[str, Any]], overlays: Iterable[Path] = (),
    where: str = "variant",
) -> Path:
    """Write the reference's six modules to ``dest``, then the ``overlays`` files, then apply ``edits``.

    Args:
        reference_dir: the reference ``faster_rcnn`` folder.
        dest: output folder (created); it gets the six module files, no ``__init__.py``.
        edits: ``[[edit]]`` blocks, applied in order.
        overlays: ``*.py`` files that replace the reference's of the same name before the edits.
        where: the variant's name, for messages.

    Returns:
        ``dest``.

    Raises:
        EditError: an edit does not apply (see :func:`apply_edit`).
    """
    reference_dir, dest = Path(reference_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for module in STUDENT_MODULES:
        shutil.copyfile(reference_dir / f"{module}.py", dest / f"{module}.py")
    for overlay in overlays:
        shutil.copyfile(overlay, dest / overlay.name)
    for number, edit in enumerate(edits, start=1):
        target = dest / edit["file"]
        target.write_text(apply_edit(target.read_text(), edit, f"{where} edit #{number}"))
    return dest


def edited_copy(source: Path, dest: Path, edits: Sequence[Mapping[str, Any]], where: str) -> Path:
    """The reference package in ``source`` copied to ``dest`` with ``edits`` applied (:func:`build_variant`)."""
    return build_variant(source, dest, edits, where=where)
