"""The student bundle: one folder with the stubs, the notebook, the runtime, the data helper,
the requirements and a short guide; self-sufficient once unzipped (``python -m rcnn_kit submit``)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import tomllib

from rcnn_kit.cli import main
from rcnn_kit.handin import STUDENT_FOLDER_NAME
from rcnn_kit.impl import STUDENT_MODULES
from release_tool.release import REFERENCE_DIR, SOURCE_NOTEBOOK, STUDENT_NOTEBOOK, STUDENT_PACKAGE
from release_tool.student_bundle import COLAB_PREINSTALLED
from test_release import leaked_lines, region_blocks

ALLOWED_IN_FOLDER = {"faster_rcnn", "faster_rcnn.ipynb", "rcnn_kit", "data_scripts", "requirements.txt", "README.md"}
FORBIDDEN_PARTS = {"solutions", "autograder", "tests", "__pycache__", "assignments", "release_tool"}
#: Seconds one command run from the unpacked bundle may take (importing torch on a loaded machine).
COMMAND_TIMEOUT_S = 300


def _build(repo_root: Path, out: Path) -> dict[str, bytes]:
    assert main(["bundle", "--root", str(repo_root), "--output", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _notebook_default(repo_root: Path, name: str) -> object:
    """The value the source notebook's parameters cell gives ``name`` (read with ast)."""
    text = (repo_root / SOURCE_NOTEBOOK).read_text(encoding="utf-8")
    cell = text.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    for node in ast.parse(cell).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not set in the parameters cell")


def test_bundle_holds_exactly_what_students_need(repo_root: Path, tmp_path: Path) -> None:
    contents = _build(repo_root, tmp_path / "student_bundle.zip")
    names = list(contents)

    assert {name.split("/")[0] for name in names} == {STUDENT_FOLDER_NAME}
    assert _notebook_default(repo_root, "DRIVE_FOLDER") == STUDENT_FOLDER_NAME, "unzips into the notebook's default"
    inside = {name.split("/", 1)[1]: data for name, data in contents.items()}
    assert {name.split("/")[0] for name in inside} == ALLOWED_IN_FOLDER
    for name in inside:
        assert not FORBIDDEN_PARTS.intersection(name.split("/")), name
        assert not name.endswith((".pyc", ".pyo")), name
    for module in STUDENT_MODULES:
        assert inside[f"faster_rcnn/{module}.py"] == (repo_root / STUDENT_PACKAGE / f"{module}.py").read_bytes()
    assert inside["faster_rcnn.ipynb"] == (repo_root / STUDENT_NOTEBOOK).read_bytes()
    for package in ("rcnn_kit", "data_scripts"):
        for path in (repo_root / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert inside[path.relative_to(repo_root).as_posix()] == path.read_bytes()

    # No solution or hidden line of any reference file in the student's files, and no
    # whole solution region anywhere (runtime files may share short lines like `return out`).
    student_texts = {name: inside[name].decode("utf-8") for name in inside if name.startswith("faster_rcnn/")}
    notebook = nbformat.reads(inside["faster_rcnn.ipynb"].decode("utf-8"), as_version=4)
    student_texts["faster_rcnn.ipynb"] = "\n".join(cell.source for cell in notebook.cells)
    for ref_path in sorted((repo_root / REFERENCE_DIR).glob("*.py")):
        reference = ref_path.read_text(encoding="utf-8")
        for name, text in student_texts.items():
            assert not leaked_lines(reference, text), f"{name} leaks {ref_path.name}"
        for block in region_blocks(reference):
            for name, data in inside.items():
                assert block not in data.decode("utf-8"), f"{name} holds a region of {ref_path.name}"


def test_requirements_are_the_dependencies_colab_lacks(repo_root: Path, tmp_path: Path) -> None:
    contents = _build(repo_root, tmp_path / "student_bundle.zip")
    lines = contents[f"{STUDENT_FOLDER_NAME}/requirements.txt"].decode("utf-8").splitlines()
    requirements = [line for line in lines if line.strip() and not line.startswith("#")]
    with (repo_root / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower(): r for r in dependencies}
    assert sorted(requirements) == sorted(r for n, r in names.items() if n not in COLAB_PREINSTALLED)
    assert {"torchmetrics", "pycocotools"} <= {re.match(r"[\w.-]+", r).group(0) for r in requirements}
    assert not any(r.startswith(("torch>", "torch=", "torchvision", "numpy")) for r in requirements)


def test_bundle_is_reproducible(repo_root: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert main(["bundle", "--root", str(repo_root), "--output", str(first)]) == 0
    assert main(["bundle", "--root", str(repo_root), "--output", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``folder`` as a student would type it: no PYTHONPATH, no terminal on stdin."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )


@pytest.mark.slow
def test_unpacked_bundle_submits_on_its_own(repo_root: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "student_bundle.zip"
    _build(repo_root, bundle)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "drive")
    folder = tmp_path / "drive" / STUDENT_FOLDER_NAME

    # The folder's own packages are the ones imported (sys.path[0] wins over any installed copy).
    proc = _run(folder, "-c", "import rcnn_kit, faster_rcnn, data_scripts; "
                "print(rcnn_kit.__file__, faster_rcnn.__file__, data_scripts.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert all(Path(p).resolve().is_relative_to(folder.resolve()) for p in proc.stdout.split())

    # Every command of the bundle's guide works as typed (with --help where it would do real work).
    readme = (folder / "README.md").read_text(encoding="utf-8")
    commands = [line.split("#")[0].split() for line in readme.splitlines() if line.startswith("python -m ")]
    runnable = [c for c in commands if c[2] in ("rcnn_kit", "data_scripts")]
    assert len(runnable) >= 3
    for command in runnable:
        proc = _run(folder, *command[1:], *([] if "--help" in command else ["--help"]))
        assert proc.returncode == 0, f"{' '.join(command)}:\n{proc.stderr}"
        assert "usage: python -m " in proc.stdout

    # The stubs: every unfinished function listed, refused without a terminal, nothing written.
    proc = _run(folder, "-m", "rcnn_kit", "submit")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    listed = re.findall(r"^  - (faster_rcnn/\w+\.py):\d+ ([\w.]+)", proc.stderr, flags=re.M)
    assert ("faster_rcnn/iou.py", "iou") in listed and ("faster_rcnn/rpn.py", "RPN.forward") in listed
    assert len(listed) == len(set(listed)) >= len(STUDENT_MODULES)
    assert "python -m rcnn_kit submit --allow-incomplete" in proc.stderr
    assert not (folder / "submission.zip").exists()

    # The finished package (the reference copied in): the zip, with the notebook.
    for module in STUDENT_MODULES:
        shutil.copy(repo_root / REFERENCE_DIR / f"{module}.py", folder / "faster_rcnn" / f"{module}.py")
    proc = _run(folder, "-m", "rcnn_kit", "submit")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NotImplementedError" not in proc.stderr
    with zipfile.ZipFile(folder / "submission.zip") as archive:
        expected = [f"faster_rcnn/{m}.py" for m in STUDENT_MODULES] + ["faster_rcnn.ipynb"]
        assert sorted(archive.namelist()) == sorted(expected)
        assert archive.read("faster_rcnn/rpn.py") == (repo_root / REFERENCE_DIR / "rpn.py").read_bytes()
