"""Named edits of the reference: "broken on purpose" code in one format.

An edit is a table (TOML ``[[edit]]``) with ``file`` and ``new`` and exactly one of

- ``old``: replace this exact text, which must occur exactly once in the file, or
- ``block``: replace the body of the file's ``block``-th ``### BEGIN SOLUTION`` region
  (0-based), re-indented to the region's ``BEGIN`` marker.

The same format describes the buggy submissions of the kit's test corpus
(tests/autograder/corpus/*/expect.toml) and the buggy variants the grader recomputes to
name a student's mistake (autograder/feedback/variants.toml). An edit whose ``old`` text or
block is gone raises :class:`EditError`, so a change of the reference can never make an
edit silently test nothing.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from release_tool.markers import BEGIN_SOLUTION, END_SOLUTION


class EditError(ValueError):
    """An edit is malformed or does not apply to the text it is meant for."""


def replace_block(text: str, index: int, body: str, where: str) -> str:
    """Replace the body of the ``index``-th SOLUTION region of ``text`` by ``body`` (re-indented).

    Raises:
        EditError: the region does not exist.
    """
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
    """Apply one edit to a file's text.

    Raises:
        EditError: the edit is malformed, its ``old`` text does not occur exactly once, or
            its block does not exist.
    """
    if "new" not in edit or ("old" in edit) == ("block" in edit):
        raise EditError(f"{where}: an edit needs `new` and exactly one of `old` / `block`, got keys {sorted(edit)}")
    if "block" in edit:
        return replace_block(text, int(edit["block"]), str(edit["new"]), where)
    count = text.count(str(edit["old"]))
    if count != 1:
        raise EditError(f"{where}: `old` text occurs {count} times in {edit.get('file')} (expected once): {edit['old']!r}")
    return text.replace(str(edit["old"]), str(edit["new"]))


def apply_edits(folder: Path, edits: Iterable[Mapping[str, Any]], where: str) -> None:
    """Apply ``edits`` in order to the files of ``folder`` (each names its ``file``).

    Raises:
        EditError: an edit does not apply, or names a file that is not in ``folder``.
    """
    for number, edit in enumerate(edits):
        name = Path(str(edit.get("file", ""))).name
        target = folder / name
        if not name or not target.is_file():
            raise EditError(f"{where} edit #{number + 1}: no file {edit.get('file')!r} in {folder}")
        target.write_text(apply_edit(target.read_text(), edit, f"{where} edit #{number + 1}"))


def edited_copy(source: Path, dest: Path, edits: Iterable[Mapping[str, Any]], where: str) -> Path:
    """Copy the ``*.py`` files of ``source`` into ``dest`` and apply ``edits`` there; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.py")):
        shutil.copy(path, dest / path.name)
    apply_edits(dest, edits, where)
    return dest
