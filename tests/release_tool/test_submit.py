"""``rcnn-kit submit`` / :mod:`rcnn_kit.handin`: checks, unfinished functions, warnings, then the zip."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from rcnn_kit import submit_command
from rcnn_kit.cli import MODULE_PROG, main
from rcnn_kit.handin import (
    SubmissionError,
    find_submission_problems,
    make_submission,
    notebook_location_warnings,
)
from rcnn_kit.impl import STUDENT_MODULES
from rcnn_kit.unfinished import find_unfinished, unfinished_in_source
from release_tool.release import REFERENCE_DIR, STUDENT_PACKAGE

EXPECTED_NAMES = sorted(f"faster_rcnn/{m}.py" for m in STUDENT_MODULES)
#: What a stub raises, read independently of rcnn_kit.unfinished: ``raise NotImplementedError('<name> in <file>: ...``.
_STUB_RAISE = re.compile(r"raise NotImplementedError\('([\w.]+) in (faster_rcnn/\w+\.py): ")


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
def light_stub(student: Path) -> Path:
    """The light folder with one TODO stub left, as the release writes it (imports without torch)."""
    (student / "faster_rcnn" / "nms.py").write_text(
        "def nms(boxes, scores, iou_threshold=0.5):\n"
        "    # TODO: your code here (replace the raise below).\n"
        "    raise NotImplementedError('nms in faster_rcnn/nms.py: TODO not implemented yet')\n",
        encoding="utf-8",
    )
    return student


@pytest.fixture()
def stub_student(repo_root: Path, tmp_path: Path) -> Path:
    """A student folder holding the generated stubs (they import, so they can be submitted)."""
    folder = tmp_path / "stub_student"
    shutil.copytree(repo_root / STUDENT_PACKAGE, folder / "faster_rcnn")
    return folder


def _stub_functions(folder: Path) -> set[tuple[str, str]]:
    """``(file, function)`` of every stub raise, found by a regex over the files."""
    found = set()
    for module in STUDENT_MODULES:
        text = (folder / "faster_rcnn" / f"{module}.py").read_text(encoding="utf-8")
        found |= {(path, name) for name, path in _STUB_RAISE.findall(text)}
    return found


def test_unfinished_lists_every_stubbed_function(stub_student: Path) -> None:
    unfinished = find_unfinished(stub_student)
    assert {(u.path, u.qualname) for u in unfinished} == _stub_functions(stub_student)
    assert len(unfinished) >= len(STUDENT_MODULES) and all(u.is_stub for u in unfinished)
    forward = next(u for u in unfinished if u.qualname == "RPN.forward")
    assert len(forward.lines) == 2 and "(2 TODO blocks)" in forward.describe()


def test_the_reference_has_nothing_unfinished(repo_root: Path, tmp_path: Path) -> None:
    shutil.copytree(repo_root / REFERENCE_DIR, tmp_path / "faster_rcnn")
    assert find_unfinished(tmp_path) == []


def test_unfinished_scan_rules() -> None:
    source = (
        "class Net:\n"
        "    def forward(self, x):\n"
        "        for i in x:\n"
        "            if i:\n"
        "                raise NotImplementedError\n"
        "        return x\n"
        "\n"
        "    def helper(self):\n"
        "        def inner():\n"
        "            raise NotImplementedError('inner in faster_rcnn/m.py: TODO not implemented yet')\n"
        "        return inner\n"
        "\n"
        "def done():\n"
        "    raise ValueError('not a stub')\n"
    )
    found = unfinished_in_source(source, "faster_rcnn/m.py")
    assert [(u.qualname, u.lines, u.is_stub) for u in found] == [
        ("Net.forward", (5,), False),
        ("Net.helper.inner", (10,), True),
    ]
    assert "your own raise?" in found[0].describe()


def test_non_interactive_submit_refuses_unfinished_work(
    stub_student: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    out = tmp_path / "submission.zip"
    assert main(["submit", str(stub_student), "--output", str(out)], prog=MODULE_PROG) == 1
    err = capsys.readouterr().err
    assert "still raise NotImplementedError" in err and "faster_rcnn/iou.py:" in err and " iou" in err
    assert f"run `{MODULE_PROG} submit --allow-incomplete`" in err
    assert not out.exists()


@pytest.mark.parametrize(("answer", "written"), [("y", True), ("", False), ("no", False)])
def test_interactive_submit_asks(
    light_stub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, written: bool
) -> None:
    questions: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: questions.append(prompt) or answer)
    out = tmp_path / "submission.zip"
    assert main(["submit", str(light_stub), "--output", str(out)]) == (0 if written else 1)
    assert questions == ["Submit anyway? [y/N] "]
    assert out.exists() is written


def test_allow_incomplete_zips_the_six_modules_and_the_notebook(stub_student: Path, tmp_path: Path) -> None:
    student = stub_student
    (student / "faster_rcnn.ipynb").write_text("{}", encoding="utf-8")
    (student / "faster_rcnn" / "notes.txt").write_text("not submitted", encoding="utf-8")
    out = tmp_path / "submission.zip"
    assert main(["submit", str(student), "--output", str(out), "--allow-incomplete"]) == 0
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(EXPECTED_NAMES + ["faster_rcnn.ipynb"])
        assert archive.read("faster_rcnn/iou.py") == (student / "faster_rcnn" / "iou.py").read_bytes()


def test_submit_usage_names_the_way_it_was_started(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["submit", "--help"], prog=MODULE_PROG)
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: {MODULE_PROG} submit") and "--allow-incomplete" in usage
    assert submit_command.DEFAULT_SUBMISSION in usage


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
    assert find_unfinished(student) == [], "files that do not parse are reported by the problem check"

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
    assert main(["submit", str(tmp_path / "nowhere")]) == 1
    assert "FOLDER" in capsys.readouterr().err


def test_notebook_location_warnings(student: Path, tmp_path: Path) -> None:
    assert "does not exist" in " ".join(notebook_location_warnings(student))
    notebook = student / "faster_rcnn.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    start = time.time()
    assert notebook_location_warnings(student, session_start=start - 60) == []

    os.utime(notebook, (start - 3600, start - 3600))  # saved an hour before this session began
    (stale,) = notebook_location_warnings(student, session_start=start)
    assert str(notebook) in stale and "before this session started" in stale

    colab_notebooks = tmp_path / "Colab Notebooks"
    colab_notebooks.mkdir()
    copy = colab_notebooks / "Copy of faster_rcnn.ipynb"
    copy.write_text("{}", encoding="utf-8")
    (student / "Copy of faster_rcnn (1).ipynb").write_text("{}", encoding="utf-8")
    (colab_notebooks / "Copy of another_course.ipynb").write_text("{}", encoding="utf-8")  # not this notebook
    found = notebook_location_warnings(student, [colab_notebooks, tmp_path / "missing"])
    assert len(found) == 2 and all("move it to" in w and str(student) in w for w in found)
    assert str(copy) in found[1]
