"""``rcnn-kit grade`` / ``grade-all`` / ``autograder-zip`` and Gradescope's run_autograder."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from collections.abc import Iterator

import pytest

from autograder.__main__ import main as autograder_main
from autograder.grading import EXIT_INFRASTRUCTURE, GradeOptions, grade
from autograder.results import validate_results
from autograder.runner import DEFAULT_CHECKS_DIR, DEFAULT_RUBRIC, load_rubric
from infra_helpers import IOU_NMS_RUBRIC, REFERENCE_DIR, REPO_ROOT, hidden_log, load_json, score_of

IOU_ONLY_RUBRIC = "[[check]]" + IOU_NMS_RUBRIC.split("[[check]]")[1]


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A folder outside pytest's root-only tmp_path, so sandboxed children can pass through."""
    path = Path(tempfile.mkdtemp(prefix="rcnn-cli-test-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_autograder_zip_has_gradescope_layout(work_dir: Path) -> None:
    overfit = work_dir / "overfit_subset"
    (overfit / "JPEGImages").mkdir(parents=True)
    (overfit / "train.json").write_text("{}")
    (overfit / "JPEGImages" / "000001.jpg").write_bytes(b"\xff\xd8fake")
    out = work_dir / "dist" / "autograder.zip"
    assert autograder_main(["autograder-zip", "--out", str(out), "--overfit-data", str(overfit)]) == 0
    with zipfile.ZipFile(out) as archive:
        infos = {i.filename: i for i in archive.infolist()}
    for script in ("setup.sh", "run_autograder"):
        assert stat.S_IMODE(infos[script].external_attr >> 16) == 0o755
    required = [
        "pyproject.toml", "rcnn_kit/__init__.py", "autograder/__main__.py", "autograder/rubric.toml",
        "autograder/checks/conftest.py", "autograder/sandbox.py", "autograder/sandboxed/child.py",
        "solutions/faster_rcnn/iou.py", "solutions/faster_rcnn/detector.py",
        "data/overfit_subset/train.json", "data/overfit_subset/JPEGImages/000001.jpg",
    ]
    for name in required:
        assert name in infos, name
    assert not [n for n in infos if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]
    checks = {p.name for p in DEFAULT_CHECKS_DIR.glob("test_*.py")}
    assert checks and checks <= {Path(n).name for n in infos if n.startswith("autograder/checks/")}


@pytest.mark.parametrize("script", ["setup.sh", "run_autograder"])
def test_gradescope_scripts_are_valid_bash(script: str) -> None:
    proc = subprocess.run(["bash", "-n", str(REPO_ROOT / "autograder" / "gradescope" / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_unprivileged_mode_grades_the_reference(work_dir: Path) -> None:
    rubric = work_dir / "rubric.toml"
    rubric.write_text(IOU_ONLY_RUBRIC)
    results, code = grade(GradeOptions(submission=REFERENCE_DIR, results=work_dir / "results.json", device="cpu",
                                       rubric=rubric, unprivileged=True))
    assert code == 0
    assert score_of(results, "iou") == 6.0
    assert f"uid={os.getuid()}" in results["tests"][-1]["output"]


def test_missing_submission_is_a_usage_error(work_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = autograder_main(["grade", str(work_dir / "nope.zip"), "--results", str(work_dir / "r.json")])
    assert code == 2
    assert "nope.zip" in capsys.readouterr().err
    assert not (work_dir / "r.json").exists()


def test_empty_submission_gets_a_valid_zero_results_json(work_dir: Path) -> None:
    (work_dir / "empty").mkdir()
    results, code = grade(GradeOptions(submission=work_dir / "empty", results=work_dir / "results.json",
                                       device="cpu", skip_overfit=True))
    assert code == 0
    on_disk = load_json(work_dir / "results.json")
    validate_results(on_disk)
    assert on_disk == results and results["score"] == 0.0
    assert {t["tags"][0] for t in results["tests"] if t.get("tags")} == {e.id for e in load_rubric(DEFAULT_RUBRIC)}
    assert "no faster_rcnn modules found" in results["output"]


def test_broken_checks_give_an_infrastructure_error_results_json(work_dir: Path) -> None:
    checks = work_dir / "checks"
    checks.mkdir()
    shutil.copy(DEFAULT_CHECKS_DIR / "conftest.py", checks / "conftest.py")
    (checks / "test_broken.py").write_text("import module_that_does_not_exist\n")
    rubric = work_dir / "rubric.toml"
    rubric.write_text(IOU_ONLY_RUBRIC)
    results, code = grade(GradeOptions(submission=REFERENCE_DIR, results=work_dir / "results.json", device="cpu",
                                       checks_dir=checks, rubric=rubric))
    assert code == EXIT_INFRASTRUCTURE
    validate_results(load_json(work_dir / "results.json"))
    assert results["score"] == 0.0
    assert "autograder itself failed" in results["output"]
    assert "module_that_does_not_exist" in results["tests"][-1]["output"]
    assert results["tests"][-1]["visibility"] == "hidden"


@pytest.mark.slow
def test_run_autograder_in_a_fake_autograder_root(work_dir: Path) -> None:
    bundle = work_dir / "autograder.zip"
    assert autograder_main(["autograder-zip", "--out", str(bundle)]) == 0
    root = work_dir / "autograder"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    (root / "submission" / "hw").mkdir(parents=True)  # as a student zips it: six files one folder down
    for module in ("iou", "nms"):
        shutil.copy(REFERENCE_DIR / f"{module}.py", root / "submission" / "hw" / f"{module}.py")
    # Prove that the bundled copy grades: its NMS checks are removed, the repository's are not.
    (root / "source" / "autograder" / "checks" / "test_nms.py").unlink()
    rubric = work_dir / "rubric.toml"
    rubric.write_text(IOU_NMS_RUBRIC)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "RCNN_KIT_VENV": sys.prefix,
           "RCNN_GRADE_ARGS": f"--rubric {rubric} --device cpu --skip-overfit"}
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = load_json(root / "results" / "results.json")
    validate_results(results)
    assert score_of(results, "iou") == 6.0
    nms = next(t for t in results["tests"] if t.get("tags") == ["nms"])
    assert nms["score"] == 0.0 and nms["output"] == "no checks ran for this part"
    assert "missing module files" in results["output"]  # the four other modules were not submitted
    assert "IoU (iou.iou)" in proc.stdout


@pytest.mark.slow
def test_rcnn_kit_grade_gives_the_reference_full_unit_marks(work_dir: Path) -> None:
    results_path = work_dir / "results.json"
    proc = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "rcnn-kit"), "grade", str(REFERENCE_DIR), "--results", str(results_path),
         "--skip-overfit", "--device", "cpu"],
        capture_output=True, text=True, timeout=1800, cwd=REPO_ROOT, env={**os.environ, "RCNN_KIT_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = load_json(results_path)
    validate_results(results)
    for entry in load_rubric(DEFAULT_RUBRIC):
        test = next(t for t in results["tests"] if t.get("tags") == [entry.id])
        if entry.kind == "overfit":
            assert "skipped" in test["output"]
        else:
            assert test["score"] == entry.points, test["output"]
    assert "TOTAL" in proc.stdout
    # Adjacent groups with the same files share a child: one child start per module set.
    unit = [e for e in load_rubric(DEFAULT_RUBRIC) if e.kind == "unit"]
    module_sets = {(frozenset(e.student_modules), frozenset(e.reference_modules)) for e in unit}
    starts = [int(n) for n in re.findall(r"^== \w+: .*\bstarts=(\d+)", hidden_log(results), flags=re.M)]
    assert len(starts) == len(unit) and sum(starts) == len(module_sets) == 6, hidden_log(results)
