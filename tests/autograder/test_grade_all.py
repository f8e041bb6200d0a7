"""``grade-all`` as instructors run it: from a course folder, with failures that must show.

The course folder it runs from holds an ``autograder/`` package of its own (what a
Gradescope-style course folder contains), here one that fails on import: grading must
still use the kit's autograder, since every submission is graded by an isolated
interpreter with the kit first on its path.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.cli import EXIT_BATCH_ERRORS, GRADER_LOG
from infra_helpers import IOU_NMS_RUBRIC, REFERENCE_DIR

IOU_ONLY_RUBRIC = "[[check]]" + IOU_NMS_RUBRIC.split("[[check]]")[1]


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["submission"]: row for row in csv.DictReader(fh)}


@pytest.fixture
def course_folder(tmp_path: Path) -> Path:
    """A course folder whose own ``autograder/`` package would break any import of it."""
    course = tmp_path / "course"
    (course / "autograder").mkdir(parents=True)
    (course / "autograder" / "__init__.py").write_text('raise ImportError("the course folder\'s own autograder/")\n')
    (course / "autograder" / "__main__.py").write_text("raise SystemExit(99)\n")
    subs = course / "submissions"
    (subs / "honest" / "faster_rcnn").mkdir(parents=True)
    shutil.copy(REFERENCE_DIR / "iou.py", subs / "honest" / "faster_rcnn" / "iou.py")
    (course / "rubric.toml").write_text(IOU_ONLY_RUBRIC)
    return course


def _grade_all(course: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "rcnn-kit"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "rcnn_kit"]
    return subprocess.run(
        [*command, "grade-all", "submissions", "--out", "gradebook.csv", "--rubric", "rubric.toml",
         "--device", "cpu", "-k", "test_iou_", *extra],
        cwd=course, capture_output=True, text=True, timeout=900,
    )


def test_grade_all_from_a_course_folder_with_its_own_autograder(course_folder: Path) -> None:
    proc = _grade_all(course_folder)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    row = _rows(course_folder / "gradebook.csv")["honest"]
    assert float(row["iou"]) == 6.0 and row["error"] == ""
    folder = course_folder / "gradebook_results" / "honest"
    assert (folder / "results.json").is_file() and (folder / GRADER_LOG).is_file()


def test_an_infrastructure_error_fails_the_batch_and_names_its_log(course_folder: Path) -> None:
    # Hidden checks that do not even parse: every grade is an infrastructure error.
    (course_folder / "checks").mkdir()
    (course_folder / "checks" / "test_iou_broken.py").write_text("def test_iou_broken(:\n")
    proc = _grade_all(course_folder, "--checks", "checks")
    assert proc.returncode == EXIT_BATCH_ERRORS
    row = _rows(course_folder / "gradebook.csv")["honest"]
    log = course_folder / "gradebook_results" / "honest" / GRADER_LOG
    assert "infrastructure error" in row["error"] and str(log) in row["error"]
    assert "test_iou_broken" in log.read_text()  # the whole cause is in the log, not cut to a CSV cell
    assert "were not graded normally" in proc.stderr
