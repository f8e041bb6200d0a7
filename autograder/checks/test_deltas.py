"""Hidden checks of ``deltas.rcnn_get_deltas_from_anchors`` (rubric id ``deltas_get``) and
``deltas.rcnn_apply_deltas_to_anchors`` (rubric id ``deltas_apply``).

Rows without a target are compared exactly (-1e8) and separately from the others: with
-1e8 in the tensor the relative error of the ordinary rows would be invisible.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch
from torch import Tensor

from rcnn_kit.course import IGNORED_DELTA
from rcnn_kit.course import IMAGE_SIZE as COURSE_IMAGE_SIZE
from autograder.sandboxed import probes
from autograder.scoring import cases
from autograder.compare import Fail, FailureDetails, assert_close, assert_on_device, assert_shape_dtype
from autograder.feedback import DELTAS_APPLY_SIGNATURES, DELTAS_GET_SIGNATURES, deltas_ignored_rows
from autograder.sandbox import SandboxClient, StudentError

#: Deltas are ratios and logs of float32 values: rounding differs by ~1e-7.
DELTAS_TOL = 1e-5
BOXES_TOL = 1e-5
IMAGE_SIZE = float(COURSE_IMAGE_SIZE)


def random_boxes(n: int, g: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """Tensor[n, 4] XYXY boxes, sides 4..100 px."""
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * IMAGE_SIZE
    wh = 4 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 96
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def get_case(
    n: int, seed: int, background: int = 0, neutral: int = 0, columns: int = 5, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """Anchors and matched GT rows; the first ``background`` rows are -1, the next ``neutral`` -1e8."""
    g = torch.Generator().manual_seed(seed)
    anchors = random_boxes(n, g, dtype)
    gt = torch.cat([random_boxes(n, g, dtype), torch.randint(0, 20, (n, 1), generator=g).to(dtype)], dim=1)
    gt[:background] = -1.0
    gt[background : background + neutral] = IGNORED_DELTA
    return {"anchors": anchors, "gt_boxes": gt[:, :columns]}


GET_CASES: dict[str, Callable[[], dict[str, Tensor]]] = {
    "foreground_only": lambda: get_case(20, 1),
    "background_rows": lambda: get_case(20, 2, background=6),
    "neutral_rows": lambda: get_case(20, 3, neutral=6),
    "mixed_rows": lambda: get_case(40, 4, background=10, neutral=10),
    "gt_without_class_column": lambda: get_case(12, 5, background=3, neutral=3, columns=4),
    "float64": lambda: get_case(15, 6, background=2, neutral=2, dtype=torch.float64),
    "empty": lambda: get_case(0, 7),
}

GET_PARAMS = {"module": "deltas", "function": "rcnn_get_deltas_from_anchors", "args": ["anchors", "gt_boxes"]}

#: Names of the four delta columns, for "only column dw is wrong".
DELTA_COLUMNS = ("dx", "dy", "dw", "dh")
#: What a case's input is special for, added to an error the student's code raised on it.
GET_CASE_NOTES = {
    "gt_without_class_column": (
        "This case passes gt_boxes with 4 columns (no class column): use gt_boxes[:, :4] and never read column 4."
    ),
}


@pytest.mark.rubric("deltas_get")
@pytest.mark.parametrize("case", cases(GET_CASES, edge={"empty"}))
def test_deltas_get_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs = GET_CASES[case]()
    what = "rcnn_get_deltas_from_anchors(anchors, gt_boxes)"
    try:
        out = student.call("call_function", inputs, **GET_PARAMS)
    except StudentError as err:
        if case in GET_CASE_NOTES and err.exc_type in ("IndexError", "RuntimeError"):
            raise StudentError(err.kind, f"{err} {GET_CASE_NOTES[case]}", err.exc_type) from None
        raise
    expected = probes.call_function(ref, inputs, **GET_PARAMS, device="cpu")["out"]
    assert_on_device(out, what)
    actual = assert_shape_dtype(out.get("out"), expected, what, inputs=inputs)
    ignored = (expected == IGNORED_DELTA).all(dim=1)  # (N,)
    hint = deltas_ignored_rows(actual, expected, inputs)
    if hint is not None:
        raise Fail(f"{what}: wrong values in rows without a target. Likely mistake: {hint}.",
                   FailureDetails(what, actual, expected, inputs))
    kept_inputs = {"anchors": inputs["anchors"][~ignored], "gt_boxes": inputs["gt_boxes"][~ignored]}
    assert_close(
        actual[~ignored], expected[~ignored], tol=DELTAS_TOL, what=f"{what} (rows with a target)", inputs=kept_inputs,
        hints=DELTAS_GET_SIGNATURES, columns=DELTA_COLUMNS, explain_inputs=inputs,
        advice="dx = (gx - px) / pw, dy = (gy - py) / ph, dw = log(gw / pw), dh = log(gh / ph) from centres and sizes",
    )


def apply_case(
    n: int, seed: int, scale: float = 0.5, huge_rows: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """Random deltas (normal, std ``scale``) and anchors; ``huge_rows`` rows get dw, dh = 8..12 (clamped)."""
    g = torch.Generator().manual_seed(seed)
    deltas = (torch.randn(n, 4, generator=g, dtype=torch.float64) * scale).to(dtype)
    deltas[:huge_rows, 2:] = (8 + 4 * torch.rand(huge_rows, 2, generator=g, dtype=torch.float64)).to(dtype)
    return {"deltas": deltas, "anchors": random_boxes(n, g, dtype)}


APPLY_CASES: dict[str, Callable[[], dict[str, Tensor]]] = {
    "small_deltas": lambda: apply_case(20, 11, scale=0.1),
    "large_deltas": lambda: apply_case(30, 12, scale=1.0),
    "clamped_dw_dh": lambda: apply_case(10, 13, huge_rows=4),
    "float64": lambda: apply_case(10, 14, dtype=torch.float64),
    "empty": lambda: apply_case(0, 15),
}

APPLY_PARAMS = {"module": "deltas", "function": "rcnn_apply_deltas_to_anchors", "args": ["deltas", "anchors"]}

#: The kind of input of the unusual cases, in words the student sees when such a case fails.
APPLY_CASE_WORDS = {"clamped_dw_dh": "dw, dh large enough to be clamped", "float64": "float64 inputs"}


@pytest.mark.rubric("deltas_apply")
@pytest.mark.parametrize("case", cases(APPLY_CASES, edge={"empty"}))
def test_deltas_apply_match_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs = APPLY_CASES[case]()
    out = student.call("call_function", inputs, **APPLY_PARAMS)
    expected = probes.call_function(ref, inputs, **APPLY_PARAMS, device="cpu")["out"]
    what = "rcnn_apply_deltas_to_anchors(deltas, anchors)"
    if int(out["meta.inputs_modified"]):
        raise Fail(f"{what} modified an input tensor in place: work on new tensors (e.g. clamp without the trailing _).")
    assert_on_device(out, what)
    assert_close(
        out.get("out"), expected, tol=BOXES_TOL, what=what, inputs=inputs, hints=DELTAS_APPLY_SIGNATURES,
        columns=("x1", "y1", "x2", "y2"), case=APPLY_CASE_WORDS.get(case),
        advice="centre (px + dx * pw, py + dy * ph), size (pw * exp(dw), ph * exp(dh)) with dw, dh clamped first",
    )
