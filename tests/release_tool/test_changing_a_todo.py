"""docs/INSTRUCTORS.md "Changing a TODO", executed on a copy of the course repository.

The instructor raises the RPN's default foreground threshold from 0.6 to 0.7 in the
reference (``rpn.RPN(anchor_iou_thresholds=(0.3, 0.7))``) and runs ``rcnn-kit release``:

- the student's stub shows the new default, and ``release --check`` is clean;
- the notebook's RPN sanity values follow on their own (recomputed from the reference);
- the autograder, reading the changed reference, gives it full marks, while the old
  behaviour (a student who kept 0.6) loses points on the RPN loss check and nowhere else.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from autograder.runner import GradeSettings, run_checks
from rcnn_kit.cli import main as release_main
from rcnn_kit.course import REFERENCE_DIR, RELEASE_DIR, RELEASE_NOTEBOOK, SOURCE_NOTEBOOK
from release_tool.release import check_release

pytestmark = pytest.mark.slow

OLD_DEFAULT = "anchor_iou_thresholds: tuple[float, float] = (0.3, 0.6),"
NEW_DEFAULT = "anchor_iou_thresholds: tuple[float, float] = (0.3, 0.7),"
#: The RPN's rubric groups: the change may cost points in rpn_losses only.
RPN_GROUPS = ("rpn_pred_net", "rpn_proposals", "rpn_losses")


def _rpn_losses_literal(notebook_source: str) -> dict[str, float]:
    """The ``expected_rpn_losses = {...}`` literal of the notebook's RPN check cell."""
    for line in notebook_source.splitlines():
        if line.startswith("expected_rpn_losses = "):
            return ast.literal_eval(line.split("=", 1)[1].strip())
    raise AssertionError("the notebook has no expected_rpn_losses literal")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    root = tmp_path_factory.mktemp("course")
    for part in ("solutions", "assignments"):
        shutil.copytree(repo_root / part, root / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    rpn = root / REFERENCE_DIR / "rpn.py"
    assert rpn.read_text().count(OLD_DEFAULT) == 1, "the reference's RPN default changed: update this guide"
    rpn.write_text(rpn.read_text().replace(OLD_DEFAULT, NEW_DEFAULT))  # step 1: the reference
    assert release_main(["release", "--root", str(root)]) == 0  # step 2: the release
    return root


def test_release_carries_the_change_to_the_stub_and_is_clean(course: Path) -> None:
    assert NEW_DEFAULT in (course / RELEASE_DIR / "rpn.py").read_text()
    assert check_release(course) == []


def test_notebook_sanity_values_follow_the_reference(course: Path, repo_root: Path) -> None:
    before = _rpn_losses_literal((repo_root / SOURCE_NOTEBOOK).read_text())
    after = _rpn_losses_literal((course / SOURCE_NOTEBOOK).read_text())
    assert after != before, "0.7 changes which anchors are foreground, so the expected losses must change"
    assert f"{after['loss_rpn_obj']}" in (course / RELEASE_NOTEBOOK).read_text()


def _grade_rpn(reference: Path, rpn_file: Path) -> dict[str, tuple[int, int]]:
    """Passed and counted cases of the RPN groups for a package whose rpn.py is ``rpn_file``."""
    files = {module.stem: module for module in reference.glob("*.py") if module.stem != "__init__"}
    files["rpn"] = rpn_file
    keyword = " or ".join(f"test_{rid}_" for rid in RPN_GROUPS)
    run = run_checks(GradeSettings(reference_dir=reference, skip_overfit=True, keyword=keyword), files)
    return {g.entry.id: (g.passed, g.counted) for g in run.groups if g.entry.id in RPN_GROUPS}


def test_the_grader_follows_the_changed_reference(course: Path, repo_root: Path) -> None:
    reference = course / REFERENCE_DIR
    changed = _grade_rpn(reference, reference / "rpn.py")
    assert all(passed == counted > 0 for passed, counted in changed.values()), changed
    old = _grade_rpn(reference, repo_root / REFERENCE_DIR / "rpn.py")
    assert old["rpn_losses"][0] < old["rpn_losses"][1], "the old default still passes every RPN loss case"
    assert all(passed == counted for rid, (passed, counted) in old.items() if rid != "rpn_losses"), old
