"""A real nbgrader round trip in a temporary course directory.

``nbgrader generate_assignment`` must accept the source notebook as it is, and
its release must have the same cells as ours (we run nbgrader's preprocessors
in-process). ``nbgrader autograde`` then runs the solution notebook (reference
package, synthetic data, tiny parameters) top to bottom through a real Jupyter
kernel (nbgrader executes with nbclient): every cell must run without an error,
the last cell must write the submission zip, and every autograded cell must get
full points. This one kernel run serves both the "solution notebook runs
headless" and the "autograde gives full points" checks, to keep CPU time low.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from rcnn_kit.impl import STUDENT_MODULES
from release_tool.notebook import inject_parameters, make_student_notebook, read_source_notebook
from release_tool.release import REFERENCE_DIR, SOURCE_NOTEBOOK

from nbrun import CELL_TIMEOUT_S, TINY_PARAMETERS, cell_text, copy_package

pytestmark = pytest.mark.slow

ASSIGNMENT = "ps1"
STUDENT = "alice"
NOTEBOOK = "faster_rcnn.ipynb"
#: Seconds allowed for one nbgrader command (autograde runs the whole notebook).
NBGRADER_TIMEOUT_S = 400


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("nbgrader")
    proc = subprocess.run(
        [str(exe), *args], cwd=course, capture_output=True, text=True, timeout=NBGRADER_TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture()
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # nbgrader's database layer runs the `alembic` script found on PATH (the venv's bin/).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel trains: one thread is far quicker on a loaded machine
    root = tmp_path / "course"
    root.mkdir()
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'rcnn_kit_course'\n"
        f"c.Execute.timeout = {CELL_TIMEOUT_S}\n",
        encoding="utf-8",
    )
    return root


def test_generate_assignment_and_autograde_give_full_points(repo_root: Path, course: Path) -> None:
    source_nb = read_source_notebook(repo_root / SOURCE_NOTEBOOK)
    source_dir = course / "source" / ASSIGNMENT
    source_dir.mkdir(parents=True)
    nbformat.write(source_nb, source_dir / NOTEBOOK)

    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")

    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    ours = make_student_notebook(source_nb, str(SOURCE_NOTEBOOK))
    assert [c.source for c in released.cells] == [c.source for c in ours.cells]
    assert [c.metadata.get("nbgrader") for c in released.cells] == [c.metadata.get("nbgrader") for c in ours.cells]

    submitted = course / "submitted" / STUDENT / ASSIGNMENT
    submitted.mkdir(parents=True)
    copy_package(repo_root / REFERENCE_DIR, submitted)
    nbformat.write(inject_parameters(source_nb, TINY_PARAMETERS), submitted / NOTEBOOK)

    _nbgrader(course, "autograde", ASSIGNMENT, "--student", STUDENT, "--force")

    workdir = course / "autograded" / STUDENT / ASSIGNMENT
    autograded = nbformat.read(workdir / NOTEBOOK, as_version=4)
    code_cells = [c for c in autograded.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "every code cell runs"
    errors = [cell_text(c) for c in code_cells if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, "\n".join(errors)
    graded_cells = [c for c in autograded.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded_cells) >= 6
    for cell in graded_cells:
        text = cell_text(cell)
        assert "checks passed" in text and "FAIL" not in text, f"{cell.metadata.nbgrader.grade_id}:\n{text}"
    gpu_text = cell_text(next(c for c in autograded.cells if c.id == "gpu_check"))
    assert "GPU found" in gpu_text or "No GPU in this runtime" in gpu_text
    with zipfile.ZipFile(workdir / "submission.zip") as archive:
        # The notebook sits beside the package in the autograde folder, so it is submitted too.
        expected = [f"faster_rcnn/{m}.py" for m in STUDENT_MODULES] + [NOTEBOOK]
        assert sorted(archive.namelist()) == sorted(expected)
    assert (workdir / "runs" / "notebook" / "train_loss.png").is_file()

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "rcnn_kit_course") as gradebook:
        submission = gradebook.find_submission_notebook(NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, STUDENT)
        grades = {g.name: (g.auto_score, g.max_score) for g in submission.grades}
        assert grades, "the source notebook must have autograded cells"
        assert all(auto == max_score for auto, max_score in grades.values()), json.dumps(grades)
        assert submission.score == submission.max_score > 0
        assert not submission.needs_manual_grade
