"""The overfit smoke test (rubric id ``overfit``): the student's whole detector must learn.

The child trains the student's FasterRCNN (their RPN and head on the given backbone, random
init) on a few synthetic training images with the profile of this grading run's device
(:data:`autograder.overfit_check.CPU_PROFILE` or :data:`~autograder.overfit_check.GPU_PROFILE`) and
returns its losses and raw detections. The grader validates them, computes the
training-set mAP@0.5 against the ground truth it kept, and passes the submission when
it reaches the profile's calibrated threshold (docs/OVERFIT_CALIBRATION.md).

Feedback, pass or fail: a Markdown summary with the loss curve and the detections on a
training image (``record_property("feedback_md", ...)``) and the two PNG files
(``record_property("artifact", (file name, bytes))``); see docs/AUTOGRADER_DESIGN.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from autograder.compare import Fail
from autograder.overfit_check import OverfitOutputError, make_training_set, run_overfit, select_profile
from autograder.overfit_feedback import draw_pictures, feedback_markdown
from autograder.sandbox import StudentError

pytestmark = pytest.mark.rubric("overfit")

#: What to look at when the child could not finish, by StudentError kind.
ERROR_HINTS = {
    "timeout": "training took too long: look for Python loops over anchors or proposals that could be tensor operations",
    "memory": "training ran out of memory: look for (R x R) or (P x P) tensors built where (R x G) would do",
    "crash": "the process running your detector died during training",
}


def test_overfit_smoke(student, grade_device: str, record_property: Callable[[str, Any], None], tmp_path: Path) -> None:
    profile = select_profile(grade_device)
    data = make_training_set(profile, tmp_path / "data")
    try:
        run, report = run_overfit(lambda name, inputs, params: student.call(name, inputs, **params), data, profile)
    except StudentError as exc:
        hint = ERROR_HINTS.get(exc.kind, "")
        raise Fail(f"overfit test: training or detection failed: {exc}" + (f" ({hint})" if hint else "")) from None
    except OverfitOutputError as exc:
        raise Fail(f"overfit test: {exc}") from None

    pictures = draw_pictures(run, data, tmp_path / "pictures")
    record_property("feedback_md", feedback_markdown(report, pictures))
    for name, path in pictures.items():
        record_property("artifact", (name, path.read_bytes()))
    if not report.passed:
        raise Fail(report.summary())
