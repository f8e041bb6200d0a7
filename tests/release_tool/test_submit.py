"""``rcnn-kit submit`` / :func:`rcnn_kit.handin.make_submission`: checks, then the zip."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from rcnn_kit.handin import SubmissionError, find_submission_problems, make_submission
from rcnn_kit.cli import main
from rcnn_kit.impl import STUDENT_MODULES
from release_tool.release import STUDENT_PACKAGE

EXPECTED_NAMES = sorted(f"faster_rcnn/{m}.py" for m in STUDENT_MODULES)


@pytest.fixture()
def student(tmp_path: Path) -> Path:
    """A light student folder: six modules with relative imports and no torch (fast import checks)."""
    package = tmp_path / "student" / "faster_rcnn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    for module in STUDENT_MODULES:
        (package / f"{module}.py").write_text(f"from . import iou\n\nNAME = {module!r}\n", encoding="utf-8")
    return package.parent


@pytest.fixture()
def stub_student(repo_root: Path, tmp_path: Path) -> Path:
    """A student folder holding the generated stubs (they import, so they can be submitted)."""
    folder = tmp_path / "stub_student"
    shutil.copytree(repo_root / STUDENT_PACKAGE, folder / "faster_rcnn")
    return folder


def test_cli_zips_the_six_modules_and_the_notebook(stub_student: Path, tmp_path: Path) -> None:
    student = stub_student
    (student / "faster_rcnn.ipynb").write_text("{}", encoding="utf-8")
    (student / "faster_rcnn" / "notes.txt").write_text("not submitted", encoding="utf-8")
    out = tmp_path / "submission.zip"
    assert main(["submit", str(student), "--output", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(EXPECTED_NAMES + ["faster_rcnn.ipynb"])
        assert archive.read("faster_rcnn/iou.py") == (student / "faster_rcnn" / "iou.py").read_bytes()


def test_notebook_is_optional(student: Path, tmp_path: Path) -> None:
    out = make_submission(student, tmp_path / "s.zip")
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == EXPECTED_NAMES


def test_every_problem_is_named(student: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (student / "faster_rcnn" / "nms.py").unlink()
    (student / "faster_rcnn" / "iou.py").write_text("def iou(:\n    pass\n", encoding="utf-8")
    problems = sorted(find_submission_problems(student))
    assert len(problems) == 2, "the import check runs only once every file compiles"
    assert problems[0].startswith("faster_rcnn/iou.py:1: syntax error")
    assert problems[1] == f"faster_rcnn/nms.py is missing from {student}"

    assert main(["submit", str(student), "--output", str(tmp_path / "s.zip"), "--no-notebook"]) == 1
    err = capsys.readouterr().err
    assert "faster_rcnn/nms.py is missing" in err and "faster_rcnn/iou.py:1" in err
    assert not (tmp_path / "s.zip").exists()


def test_import_failure_names_the_module(student: Path, tmp_path: Path) -> None:
    rpn = student / "faster_rcnn" / "rpn.py"
    rpn.write_text(rpn.read_text(encoding="utf-8") + "\nimport package_that_does_not_exist\n", encoding="utf-8")
    with pytest.raises(SubmissionError, match=r"faster_rcnn/rpn\.py does not import: ModuleNotFoundError"):
        make_submission(student, tmp_path / "s.zip")


def test_import_runs_in_another_process_with_a_timeout(student: Path, tmp_path: Path) -> None:
    marker = tmp_path / "imported_by_pid.txt"
    iou = student / "faster_rcnn" / "iou.py"
    iou.write_text(
        iou.read_text(encoding="utf-8") + f"\nimport os\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n",
        encoding="utf-8",
    )
    assert find_submission_problems(student) == []
    assert int(marker.read_text()) != os.getpid()

    (student / "faster_rcnn" / "nms.py").write_text("while True:\n    pass\n", encoding="utf-8")
    problems = find_submission_problems(student, timeout_s=5)
    assert len(problems) == 1 and "took longer than 5 s" in problems[0]


def test_missing_folder_and_notebook(
    student: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(FileNotFoundError, match="folder"):
        find_submission_problems(tmp_path / "nowhere")
    assert main(["submit", str(student), "--notebook", str(tmp_path / "none.ipynb")]) == 1
    assert "--notebook" in capsys.readouterr().err
