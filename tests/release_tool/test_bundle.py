"""The student bundle holds the stubs, the notebook, the runtime and the data helper: nothing else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat

from rcnn_kit.cli import main
from rcnn_kit.impl import STUDENT_MODULES
from release_tool.release import REFERENCE_DIR, STUDENT_NOTEBOOK, STUDENT_PACKAGE

from .test_release import leaked_lines, region_blocks

ALLOWED_TOP_LEVEL = {"faster_rcnn", "faster_rcnn.ipynb", "rcnn_kit", "data_scripts"}
FORBIDDEN_PARTS = {"solutions", "autograder", "tests", "__pycache__", "assignments"}


def test_bundle_holds_exactly_what_students_need(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "student_bundle.zip"
    assert main(["bundle", "--root", str(repo_root), "--output", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        contents = {name: archive.read(name) for name in names}

    assert {name.split("/")[0] for name in names} == ALLOWED_TOP_LEVEL
    for name in names:
        assert not FORBIDDEN_PARTS.intersection(name.split("/")), name
        assert not name.endswith((".pyc", ".pyo")), name
    for module in STUDENT_MODULES:
        assert contents[f"faster_rcnn/{module}.py"] == (repo_root / STUDENT_PACKAGE / f"{module}.py").read_bytes()
    assert contents["faster_rcnn.ipynb"] == (repo_root / STUDENT_NOTEBOOK).read_bytes()
    for package in ("rcnn_kit", "data_scripts"):
        for path in (repo_root / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert contents[path.relative_to(repo_root).as_posix()] == path.read_bytes()

    # No solution or hidden line of any reference file in the student's files, and no
    # whole solution region anywhere (runtime files may share short lines like `return out`).
    student_texts = {name: contents[name].decode("utf-8") for name in names if name.startswith("faster_rcnn/")}
    notebook = nbformat.reads(contents["faster_rcnn.ipynb"].decode("utf-8"), as_version=4)
    student_texts["faster_rcnn.ipynb"] = "\n".join(cell.source for cell in notebook.cells)
    for ref_path in sorted((repo_root / REFERENCE_DIR).glob("*.py")):
        reference = ref_path.read_text(encoding="utf-8")
        for name, text in student_texts.items():
            assert not leaked_lines(reference, text), f"{name} leaks {ref_path.name}"
        for block in region_blocks(reference):
            for name, data in contents.items():
                assert block not in data.decode("utf-8"), f"{name} holds a region of {ref_path.name}"


def test_bundle_is_reproducible_and_self_contained(repo_root: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert main(["bundle", "--root", str(repo_root), "--output", str(first)]) == 0
    assert main(["bundle", "--root", str(repo_root), "--output", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()

    unpacked = tmp_path / "student"
    with zipfile.ZipFile(first) as archive:
        archive.extractall(unpacked)
    # The unpacked folder alone provides both packages (sys.path[0] wins over the editable install).
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pathlib\n"
        "import rcnn_kit.checks, faster_rcnn.detector\n"
        "root = pathlib.Path(sys.argv[1]).resolve()\n"
        "for m in (rcnn_kit, faster_rcnn):\n"
        "    assert root in pathlib.Path(m.__file__).resolve().parents, m.__file__\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(unpacked)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
