"""The overfit smoke test (rubric id ``overfit``): the student's whole detector must learn.

The child trains the student's FasterRCNN (their RPN and head on the given backbone, random
init) on a few training images with the profile of this grading run
(:func:`autograder.overfit_profile.choose_profile`: ``--overfit-profile`` or the shipped
profile of the grading device) on the data it was calibrated on
(:func:`autograder.overfit_data.load_training_set`: synthetic, or the bundled overfit subset),
and returns its losses and raw detections. The grader validates them, computes the
training-set mAP@0.5 against the ground truth it kept, and passes the submission when
it reaches the profile's calibrated pass mark (docs/OVERFIT_CALIBRATION.md). The instructor
log names the profile (file, device class, calibration date, pass mark) and the data.

Feedback, pass or fail: a Markdown summary with the loss curve and the detections on a
training image (``record_property("feedback_md", ...)``) and the two PNG files
(``record_property("artifact", (file name, bytes))``); see docs/AUTOGRADER_DESIGN.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from autograder.compare import Fail
from autograder.overfit_check import OverfitOutputError, run_overfit
from autograder.overfit_data import load_training_set
from autograder.overfit_feedback import draw_pictures, feedback_markdown
from autograder.overfit_profile import OverfitChoice, choose_profile
from autograder.sandbox import StudentError

pytestmark = pytest.mark.rubric("overfit")

#: What to look at when the child could not finish, by StudentError kind.
ERROR_HINTS = {
    "timeout": "training took too long: look for Python loops over anchors or proposals that could be tensor operations",
    "memory": "training ran out of memory: look for (R x R) or (P x P) tensors built where (R x G) would do",
    "crash": "the process running your detector died during training",
}


def test_overfit_smoke(
    student, grade_device: str, overfit_choice: OverfitChoice, record_property: Callable[[str, Any], None], tmp_path: Path
) -> None:
    profile, notes = choose_profile(grade_device, overfit_choice)
    data, data_notes = load_training_set(profile, tmp_path / "data", overfit_choice)
    record_property("instructor_note", "\n".join([profile.describe(), *notes, *data_notes]))
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
