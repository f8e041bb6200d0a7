"""The corpus of submissions under tests/autograder/corpus/ and how to build them.

Layout: ``corpus/correct/<name>/``, ``corpus/buggy/<name>/`` and ``corpus/students/<name>/``
each hold an ``expect.toml`` and optionally ``*.py`` files that replace the reference's.
``expect.toml``::

    description = "..."
    lose = ["iou"]            # buggy only: exactly these rubric ids must lose points
    feedback = "clamp"        # buggy only, optional: a failure message must contain this
    runner_feedback = "..."   # optional: what the sandboxed run must show instead (free text from
                              # children that hold reference code is replaced by fixed hints)
    requires_cuda = false     # optional: the bug shows only on a GPU
    representative = false    # optional: prefer this entry when the real runner grades one per rubric id

    [[edit]]                  # applied in order to the reference text of `file`
    file = "iou.py"
    old = "..."               # replace this exact text (it must occur exactly once), or
    block = 0                 # replace the body of the file's block-th SOLUTION block,
    new = "..."               # re-indented to the block's BEGIN marker

A ``students`` entry is a whole-module submission in a student's own style (every SOLUTION
block of the modules it rewrites is replaced) with several interacting mistakes. Instead of
``lose``/``feedback`` it names, per rubric id that must lose points, the phrases of which
every failed case's message must show one (the hint names the actual cause)::

    [hints]
    rpn_proposals = ["before the clip", "(height, width)"]

Edits (format: :mod:`autograder.reference_edits`, shared with the grader's buggy variants)
keep the corpus valid while the reference's comments and given code change; an edit whose
``old`` text is gone fails loudly instead of silently testing nothing.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from autograder.reference_edits import apply_edits
from rcnn_kit.impl import STUDENT_MODULES

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT / "solutions" / "faster_rcnn"
KINDS = ("correct", "buggy", "students")


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
    edits: tuple[dict, ...] = field(default_factory=tuple)
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
        expect_file = folder / "expect.toml"
        with expect_file.open("rb") as fh:
            data = tomllib.load(fh)
        allowed = {"description", "lose", "feedback", "runner_feedback", "requires_cuda", "representative", "edit", "hints"}
        unknown = set(data) - allowed
        if unknown or "description" not in data:
            raise ValueError(f"{expect_file}: unknown keys {sorted(unknown)} or no description")
        hints = {rid: tuple(phrases) for rid, phrases in data.get("hints", {}).items()}
        entries.append(
            CorpusEntry(
                kind=kind, name=folder.name, folder=folder, description=data["description"],
                lose=tuple(data.get("lose", tuple(hints))), feedback=data.get("feedback"),
                runner_feedback=data.get("runner_feedback"), hints=hints,
                requires_cuda=bool(data.get("requires_cuda", False)),
                representative=bool(data.get("representative", False)), edits=tuple(data.get("edit", ())),
            )
        )
    return entries


def build_submission(entry: CorpusEntry, dest: Path) -> Path:
    """Write the entry's submission (reference + overlaid files + edits) to ``dest``; return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for module in STUDENT_MODULES:
        shutil.copy(REFERENCE_DIR / f"{module}.py", dest / f"{module}.py")
    for overlay in entry.folder.glob("*.py"):
        shutil.copy(overlay, dest / overlay.name)
    apply_edits(dest, entry.edits, f"{entry.kind}/{entry.name}")
    return dest
