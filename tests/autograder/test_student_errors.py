"""Structured error categories: computed by the child (autograder/sandboxed/errors.py), shown
with the grader's own texts (autograder/student_errors.py), never the child's free text."""

from __future__ import annotations

import pytest
import torch

from autograder.sandboxed.errors import ERROR_CATEGORIES, error_category
from autograder.sandboxed.probes import ProbeError
from autograder.student_errors import CATEGORY_TEXT, category_message, clean_details, explain_parameter_error


class FakeProbeError(Exception):
    """A student's look-alike of the probes' ProbeError (same class name)."""

    def __init__(self, code: object, details: object) -> None:
        super().__init__("anything")
        self.code, self.details = code, details


FakeProbeError.__name__ = "ProbeError"


class Unprintable(RuntimeError):
    def __str__(self) -> str:
        raise ValueError("no")


@pytest.mark.parametrize(
    "exc, category",
    [
        (RuntimeError("Found no NVIDIA driver on your system."), "cuda_unavailable"),
        (AssertionError("Torch not compiled with CUDA enabled"), "cuda_unavailable"),
        (RuntimeError("Expected all tensors to be on the same device, but found cuda:0 and cpu"), "device_mismatch"),
        (RuntimeError("expected m1 and m2 to have the same dtype, but got: double != float"), "dtype_mismatch"),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x5 and 4x3)"), "shape_mismatch"),
        (ValueError("Found no NVIDIA driver"), None),  # only the exception types torch raises count
        (type("Sub", (RuntimeError,), {})("Found no NVIDIA driver"), None),  # subclasses do not either
        (Unprintable(), None),
    ],
)
def test_builtin_exceptions_are_classified_by_type_and_message(exc: BaseException, category: str | None) -> None:
    assert error_category(exc).get("category") == category
    assert set(error_category(exc)) <= {"category"}  # nothing of the message travels


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_real_hard_coded_cuda_tensor_is_cuda_unavailable() -> None:
    with pytest.raises(BaseException) as info:
        torch.zeros(2, device="cuda")
    assert error_category(info.value) == {"category": "cuda_unavailable"}


def test_probe_errors_carry_a_cleaned_category_and_details() -> None:
    exc = ProbeError("x", "param_shape", {"owner": "FasterRCNN", "param": "cls_pred.weight", "received": [5, 294],
                                          "junk": {"nested": 1}, "long": "y" * 500})
    assert error_category(exc) == {
        "category": "param_shape", "details": {"owner": "FasterRCNN", "param": "cls_pred.weight", "received": [5, 294]}
    }
    assert error_category(FakeProbeError("free text", {})) == {}  # not a category of the enum


def test_category_message_uses_the_graders_text_only_where_the_message_is_withheld_or_always_for_cuda() -> None:
    assert category_message("cuda_unavailable", withheld=False) == CATEGORY_TEXT["cuda_unavailable"]
    assert "overfit test" in CATEGORY_TEXT["cuda_unavailable"]
    assert category_message("shape_mismatch", withheld=False) is None
    assert category_message("shape_mismatch", withheld=True) == CATEGORY_TEXT["shape_mismatch"]
    assert category_message("made_up", withheld=True) is None
    assert category_message(["cuda_unavailable"], withheld=True) is None
    assert set(CATEGORY_TEXT) == set(ERROR_CATEGORIES)


def test_clean_details_keeps_short_names_and_small_integer_lists() -> None:
    raw = {"param": "a.weight", "received": [3, 4], "big": [10**9], "neg": [-1], "text": "z" * 101, "n": 2,
           "nested": [[1]], "x" * 30: "key too long"}
    assert clean_details(raw) == {"param": "a.weight", "received": [3, 4], "n": 2}
    assert clean_details("not a dict") == {}


SENT = {"stem_rpn.0.weight": (6, 8, 3, 3), "pred_box.weight": (12, 6, 1, 1)}
ADVICE = {"stem_rpn.0.": "the first conv takes in_channels", "stem_rpn.": "other convs", "pred_box.": "4A outputs"}


def test_parameter_errors_name_the_reference_parameter_and_both_shapes() -> None:
    details = {"owner": "RPNPredictionNetwork", "param": "stem_rpn.0.weight", "received": [6, 6, 3, 3]}
    text = explain_parameter_error("param_shape", details, SENT, ADVICE)
    assert text == (
        "RPNPredictionNetwork does not match the specification: parameter 'stem_rpn.0.weight' has shape "
        "(6, 6, 3, 3), expected (6, 8, 3, 3): the first conv takes in_channels"
    )
    missing = explain_parameter_error("param_missing", {"param": "pred_box.weight"}, SENT, ADVICE)
    assert missing is not None and "no parameter 'pred_box.weight' of shape (12, 6, 1, 1): 4A outputs" in missing
    extra = explain_parameter_error("param_extra", {"owner": "FasterRCNN", "count": 2}, SENT, ADVICE)
    assert extra is not None and "2 parameters more" in extra


def test_parameter_errors_with_names_the_grader_did_not_send_are_rejected() -> None:
    smuggled = {"param": "def iou(boxes1, boxes2):", "received": [1]}
    assert explain_parameter_error("param_shape", smuggled, SENT, ADVICE) is None
    assert explain_parameter_error("param_shape", {"param": "pred_box.weight"}, SENT, ADVICE) is None  # no shape
    owner = explain_parameter_error("param_missing", {"owner": "free text", "param": "pred_box.weight"}, SENT, ADVICE)
    assert owner is not None and owner.startswith("your module does not match")
