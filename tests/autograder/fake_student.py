"""In-process stand-in for the sandbox's ``student`` fixture (kit tests only, never graded).

Runs the probes directly on a hybrid package assembled like the sandbox's: the student's
files for a rubric group plus reference copies of the group's dependencies. Used by
:mod:`check_driver` to run the hidden checks on many corpus submissions quickly; it gives
no isolation at all (the real runner's children are tested by test_corpus.py and the
sandbox helper's tests).
"""

from __future__ import annotations

import itertools
import shutil
import tomllib
from pathlib import Path
from typing import Any

import torch

from autograder.sandbox import StudentError
from autograder.sandboxed import probes, probes_detector
from autograder.sandboxed.errors import error_category
from autograder.student_errors import category_message, clean_details
from rcnn_kit.impl import import_faster_rcnn, import_module

REPO_ROOT = Path(__file__).resolve().parents[2]
RUBRIC = REPO_ROOT / "autograder" / "rubric.toml"
REFERENCE_DIR = REPO_ROOT / "solutions" / "faster_rcnn"
_counter = itertools.count()


def rubric_groups() -> dict[str, dict[str, Any]]:
    """``{id: [[check]] table}`` of autograder/rubric.toml."""
    return {entry["id"]: entry for entry in tomllib.loads(RUBRIC.read_text())["check"]}


class FakeStudent:
    """``student.call(probe, inputs, **params)`` run in this process on a hybrid package."""

    def __init__(self, submission: Path, group: dict[str, Any], scratch: Path) -> None:
        self.submission = submission
        self.group = group
        folder = scratch / f"hybrid_{next(_counter)}"
        folder.mkdir(parents=True)
        shutil.copy(REFERENCE_DIR / "__init__.py", folder / "__init__.py")
        for module in group["reference_modules"]:
            shutil.copy(REFERENCE_DIR / f"{module}.py", folder / f"{module}.py")
        for module in group["student_modules"]:
            shutil.copy(submission / f"{module}.py", folder / f"{module}.py")
        self.pkg = import_faster_rcnn(folder, name=f"fake_student_pkg_{next(_counter)}")
        for module in group["student_modules"]:
            import_module(self.pkg, module)

    def call(self, probe: str, inputs: dict[str, torch.Tensor], **params: Any) -> dict[str, torch.Tensor]:
        """Run the probe in process; the student's exceptions become :class:`StudentError` as in the runner.

        The message is the grader's fixed text when the exception has a category
        (:mod:`autograder.student_errors`), else ``Type: message`` (the runner withholds that
        text where the child holds reference code; the kit's runner tests cover that).
        """
        module = probes if hasattr(probes, probe) else probes_detector
        try:
            result = getattr(module, probe)(self.pkg, {k: v.clone() for k, v in inputs.items()}, **params)
        except Exception as exc:
            structured = error_category(exc)
            fixed = category_message(structured.get("category"), withheld=bool(self.group["reference_modules"]))
            message = fixed or f"{type(exc).__name__}: {exc}"
            raise StudentError(
                "exception", message, type(exc).__name__, structured.get("category"),
                clean_details(structured.get("details")), str(exc),
            ) from exc
        return {k: v.detach().cpu() for k, v in result.items()}

    def source(self, module: str) -> str:
        return (self.submission / f"{module}.py").read_text()
