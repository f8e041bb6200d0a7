"""Hidden checks of ``iou.iou`` (rubric id ``iou``).

Each case is seeded; inputs and expected values stay in the grader. The reference output
is computed by the same probe on the reference package, on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch
from torch import Tensor

from rcnn_kit.course import IMAGE_SIZE as COURSE_IMAGE_SIZE
from autograder.sandboxed import probes
from autograder.scoring import cases
from autograder.compare import Fail, assert_close, assert_on_device
from autograder.feedback import IOU_SIGNATURES, find_library_box_ops
from autograder.sandbox import SandboxClient

pytestmark = pytest.mark.rubric("iou")

#: Relative-error tolerance: IoU is in [0, 1]; float32 rounding differs by ~1e-7.
IOU_TOL = 1e-5
IMAGE_SIZE = float(COURSE_IMAGE_SIZE)


def random_boxes(n: int, seed: int, dtype: torch.dtype = torch.float32, min_size: float = 1.0) -> Tensor:
    """Tensor[n, 4] XYXY boxes inside a 224 px image with sides >= ``min_size``."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * IMAGE_SIZE * 0.8
    wh = min_size + torch.rand(n, 2, generator=g, dtype=torch.float64) * IMAGE_SIZE * 0.4
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def _special_pairs() -> dict[str, Tensor]:
    """Identical, nested, touching, disjoint and zero-area boxes (IoU 1, 0.25, 0, 0, 0)."""
    boxes1 = torch.tensor([[10.0, 10, 50, 50], [0, 0, 40, 40], [0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 20]])
    boxes2 = torch.tensor([[10.0, 10, 50, 50], [10, 10, 30, 30], [10, 0, 20, 10], [100, 100, 120, 130], [5, 5, 5, 20]])
    return {"boxes1": boxes1, "boxes2": boxes2}


CASES: dict[str, Callable[[], dict[str, Tensor]]] = {
    "random_m_ne_n": lambda: {"boxes1": random_boxes(7, 1), "boxes2": random_boxes(5, 2)},
    "random_large": lambda: {"boxes1": random_boxes(60, 3), "boxes2": random_boxes(45, 4)},
    "special_pairs": _special_pairs,
    "one_vs_many": lambda: {"boxes1": random_boxes(1, 5), "boxes2": random_boxes(30, 6)},
    "empty_boxes1": lambda: {"boxes1": torch.zeros(0, 4), "boxes2": random_boxes(4, 7)},
    "empty_boxes2": lambda: {"boxes1": random_boxes(3, 8), "boxes2": torch.zeros(0, 4)},
    "float64": lambda: {"boxes1": random_boxes(6, 9, torch.float64), "boxes2": random_boxes(8, 10, torch.float64)},
    "tiny_boxes": lambda: {"boxes1": random_boxes(10, 11, min_size=0.01), "boxes2": random_boxes(10, 12, min_size=0.01)},
}

PARAMS = {"module": "iou", "function": "iou", "args": ["boxes1", "boxes2"]}

#: The kind of input of the degenerate cases, in words the student sees when such a case fails.
CASE_WORDS = {
    "special_pairs": "identical, nested, touching, disjoint and zero-area boxes",
    "empty_boxes1": "an empty boxes1", "empty_boxes2": "an empty boxes2",
    "float64": "float64 boxes", "tiny_boxes": "tiny boxes (sides down to 0.01 px)",
}


@pytest.mark.parametrize("case", cases(CASES, edge={"empty_boxes1", "empty_boxes2"}))
def test_iou_matches_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs = CASES[case]()
    out = student.call("call_function", inputs, **PARAMS, forbid_library_ops=True)
    expected = probes.call_function(ref, inputs, **PARAMS, device="cpu")["out"]
    what = "iou(boxes1, boxes2)"
    if int(out["meta.library_calls"]):
        raise Fail(f"{what} calls library box operations: write it yourself")
    assert_on_device(out, what)
    assert_close(
        out.get("out"), expected, tol=IOU_TOL, what=what, inputs=inputs, hints=IOU_SIGNATURES,
        case=CASE_WORDS.get(case),
        advice="IoU = intersection / (area1 + area2 - intersection), sides clamped at 0, 0 where the union is 0",
    )


@pytest.mark.edge_case
def test_iou_is_own_code(student: SandboxClient) -> None:
    findings = find_library_box_ops(student.source("iou"), "iou.py")
    if findings:
        raise Fail("iou must be your own code, without torchvision box operations: " + "; ".join(findings))
