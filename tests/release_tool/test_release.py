"""``rcnn-kit release``: the generated tree matches the reference, API and secrecy.

The committed ``assignments/`` must be exactly what the release writes (the CI
check), the stub package must expose the reference's public API, and no line of
any solution or hidden region may reach a student file. Region finding here is
an independent line scan, not :mod:`release_tool.markers`.
"""

from __future__ import annotations

import inspect
import keyword
import shutil
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from rcnn_kit.cli import main
from rcnn_kit.impl import STUDENT_MODULES, import_faster_rcnn, import_module
from release_tool.release import (
    REFERENCE_DIR,
    SOURCE_NOTEBOOK,
    STUDENT_NOTEBOOK,
    STUDENT_PACKAGE,
    check_release,
    render_release,
    write_release,
)

#: Marker lines as instructors write them (kept literal here on purpose).
_BEGIN = {"### BEGIN SOLUTION": "SOLUTION", "### BEGIN HIDDEN": "HIDDEN"}
_END = {"### END SOLUTION", "### END HIDDEN"}
#: The course order of the notebook's numbered sections.
NOTEBOOK_SECTIONS = (
    "Setup",
    "Data",
    "Anchors",
    "Intersection over union",
    "Box deltas",
    "Non-maximum suppression",
    "Matching",
    "Region Proposal Network",
    "full Faster R-CNN",
    "detections",
    "Training",
    "mean average precision",
    "Submit",
)


def region_code_lines(text: str) -> tuple[list[set[str]], set[str]]:
    """Per region, its stripped code lines; and the stripped lines outside every region."""
    regions: list[set[str]] = []
    outside: set[str] = set()
    current: set[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in _BEGIN:
            current = set()
        elif stripped in _END:
            assert current is not None
            regions.append(current)
            current = None
        elif current is not None:
            if stripped and not stripped.startswith("#"):
                current.add(stripped)
        else:
            outside.add(stripped)
    return regions, outside


def region_blocks(text: str) -> list[str]:
    """The text between each BEGIN and END marker pair, verbatim (markers excluded)."""
    blocks, current = [], None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped in _BEGIN:
            current = []
        elif stripped in _END:
            blocks.append("".join(current or []))
            current = None
        elif current is not None:
            current.append(line)
    return [b for b in blocks if b.strip()]


def leaked_lines(reference_text: str, student_text: str) -> set[str]:
    """Solution/hidden code lines of ``reference_text`` that appear in ``student_text``."""
    regions, outside = region_code_lines(reference_text)
    student_lines = {line.strip() for line in student_text.splitlines()}
    secret = set().union(*regions) - outside if regions else set()
    # A bare keyword statement ("continue", "else:") is not solution code anyone could leak.
    return {line for line in secret & student_lines if not keyword.iskeyword(line.rstrip(":"))}


def test_committed_assignments_match_the_release(repo_root: Path) -> None:
    assert check_release(repo_root) == []
    assert main(["release", "--check", "--root", str(repo_root)]) == 0


def test_check_names_every_stale_missing_and_extra_file(
    repo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(repo_root / REFERENCE_DIR, tmp_path / REFERENCE_DIR, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(repo_root / SOURCE_NOTEBOOK, tmp_path / SOURCE_NOTEBOOK)
    assert sorted(check_release(tmp_path)) == sorted(f"{rel}: missing" for rel in render_release(tmp_path))

    assert main(["release", "--root", str(tmp_path)]) == 0
    assert check_release(tmp_path) == []
    (tmp_path / STUDENT_PACKAGE / "iou.py").write_text("# my edit\n", encoding="utf-8")
    (tmp_path / STUDENT_PACKAGE / "nms.py").unlink()
    (tmp_path / STUDENT_PACKAGE / "extra.py").write_text("x = 1\n", encoding="utf-8")
    capsys.readouterr()

    assert main(["release", "--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name, what in (("iou.py", "differs"), ("nms.py", "missing"), ("extra.py", "not produced")):
        assert f"{STUDENT_PACKAGE}/{name}: {what}" in err

    changed = write_release(tmp_path)
    assert sorted(changed) == sorted(
        [f"{STUDENT_PACKAGE}/iou.py", f"{STUDENT_PACKAGE}/nms.py", f"{STUDENT_PACKAGE}/extra.py (removed)"]
    )
    assert check_release(tmp_path) == []


def test_release_reports_a_missing_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", "--root", str(tmp_path)]) == 1
    assert "solutions/faster_rcnn" in capsys.readouterr().err


def test_bad_notebook_markers_fail_the_release_naming_the_notebook(
    repo_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(repo_root / REFERENCE_DIR, tmp_path / REFERENCE_DIR, ignore=shutil.ignore_patterns("__pycache__"))
    source = (repo_root / SOURCE_NOTEBOOK).read_text(encoding="utf-8")
    unclosed = source + '\n# %% nbgrader={"grade": false, "grade_id": "extra", "locked": false, ' + (
        '"schema_version": 3, "solution": true, "task": false}\n### BEGIN SOLUTION\nanswer = 42\n'
    )
    (tmp_path / SOURCE_NOTEBOOK).write_text(unclosed, encoding="utf-8")
    assert main(["release", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{SOURCE_NOTEBOOK}: RuntimeError: no end solution statement found" in err
    assert not (tmp_path / STUDENT_PACKAGE).exists(), "nothing is written when rendering fails"


def _public_api(module: ModuleType) -> dict[str, str]:
    """Public names of a module with the signature of each callable (and of each public method)."""
    api: dict[str, str] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, ModuleType):
            continue
        api[name] = str(inspect.signature(value)) if callable(value) else type(value).__name__
        if inspect.isclass(value) and value.__module__ == module.__name__:
            for attr, member in vars(value).items():
                if not attr.startswith("_") or attr == "__init__":
                    api[f"{name}.{attr}"] = str(inspect.signature(member)) if callable(member) else "attr"
    return api


def test_stub_package_imports_with_the_reference_api(repo_root: Path, ref: ModuleType) -> None:
    stub = import_faster_rcnn(repo_root / STUDENT_PACKAGE, name="stub_faster_rcnn")
    for module in STUDENT_MODULES:
        stub_api = _public_api(import_module(stub, module))
        ref_api = _public_api(getattr(ref, module))
        assert stub_api == ref_api, f"{module}: public names or signatures differ"


def test_stubs_raise_naming_function_and_file(repo_root: Path) -> None:
    import torch

    stub = import_faster_rcnn(repo_root / STUDENT_PACKAGE, name="stub_faster_rcnn")
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(NotImplementedError, match=r"^iou in faster_rcnn/iou\.py"):
        import_module(stub, "iou").iou(boxes, boxes)
    with pytest.raises(NotImplementedError, match=r"^rcnn_get_deltas_from_anchors in faster_rcnn/deltas\.py"):
        import_module(stub, "deltas").rcnn_get_deltas_from_anchors(boxes, boxes)
    with pytest.raises(NotImplementedError, match=r"^RPNPredictionNetwork\.__init__ in faster_rcnn/rpn\.py"):
        import_module(stub, "rpn").RPNPredictionNetwork(8, [8])


def test_no_solution_text_reaches_any_stub(repo_root: Path) -> None:
    regions_seen = 0
    for path in sorted((repo_root / REFERENCE_DIR).glob("*.py")):
        reference = path.read_text(encoding="utf-8")
        stub = (repo_root / STUDENT_PACKAGE / path.name).read_text(encoding="utf-8")
        regions, _ = region_code_lines(reference)
        regions_seen += len(regions)
        assert not leaked_lines(reference, stub), f"{path.name} leaks solution lines"
        assert "BEGIN SOLUTION" not in stub and "BEGIN HIDDEN" not in stub
        assert stub.startswith(f"# GENERATED by rcnn-kit release from {REFERENCE_DIR}/{path.name}")
    assert regions_seen >= len(STUDENT_MODULES), "every student module has at least one TODO"


def test_leak_detector_catches_a_leak() -> None:
    reference = (
        "def f():\n    # hint\n    ### BEGIN SOLUTION\n"
        "    secret = 41 + 1\n    return secret\n    ### END SOLUTION\n"
    )
    assert leaked_lines(reference, "def f():\n    secret = 41 + 1\n") == {"secret = 41 + 1"}
    assert leaked_lines(reference, "def f():\n    # hint\n    raise NotImplementedError\n") == set()


def test_student_notebook_is_a_clean_nbgrader_colab_notebook(repo_root: Path) -> None:
    nb = nbformat.read(repo_root / STUDENT_NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3" and "colab" in nb.metadata
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded) >= 6
    for cell in nb.cells:
        assert "BEGIN SOLUTION" not in cell.source and "BEGIN HIDDEN" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        meta = cell.metadata.get("nbgrader")
        if meta is not None:
            assert meta["schema_version"] == 3 and meta["grade_id"] == cell.id and "checksum" in meta
            assert meta["locked"] and cell.metadata["deletable"] is False
    assert all(c.metadata.nbgrader["points"] > 0 for c in graded)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "nbgrader" not in tagged[0].metadata, "students may edit the parameters"

    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    positions = [next(i for i, h in enumerate(headings) if section in h) for section in NOTEBOOK_SECTIONS]
    assert positions == sorted(positions), f"sections out of the course order: {headings}"
    setup = next(c for c in nb.cells if c.id == "setup_colab").source
    for needle in ("drive.mount", "DRIVE_FOLDER", "sys.path.insert", "pip", "autoreload"):
        assert needle in setup
    assert "No GPU" in next(c for c in nb.cells if c.id == "gpu_check").source
