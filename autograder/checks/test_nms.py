"""Hidden checks of ``nms.nms`` (rubric id ``nms``); the child uses the reference ``iou``."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch
from torch import Tensor

from rcnn_kit.course import IMAGE_SIZE as COURSE_IMAGE_SIZE
from autograder.sandboxed import probes
from autograder.scoring import cases
from autograder.compare import Fail, assert_equal_indices, assert_on_device
from autograder.feedback import NMS_SIGNATURES, find_library_box_ops, nms_properties
from autograder.sandbox import SandboxClient

pytestmark = pytest.mark.rubric("nms")

IMAGE_SIZE = float(COURSE_IMAGE_SIZE)


def clustered_boxes(n: int, seed: int, clusters: int = 4) -> dict[str, Tensor]:
    """``n`` boxes jittered around ``clusters`` centres (so many overlap) and distinct scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(clusters, 2, generator=g) * IMAGE_SIZE
    which = torch.randint(0, clusters, (n,), generator=g)
    xy = centres[which] + torch.randn(n, 2, generator=g) * 8
    wh = 20 + torch.rand(n, 2, generator=g) * 30
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    return {"boxes": boxes, "scores": torch.randperm(n, generator=g).float() / n + 0.01}


def with_threshold(inputs: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    return {**inputs, "iou_threshold": torch.tensor(threshold, dtype=torch.float64)}


def _boundary() -> dict[str, Tensor]:
    """A pair with IoU exactly 0.5 (exact in float32), plus a clearly separate box."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60], [0, 0, 10, 11]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    return with_threshold({"boxes": boxes, "scores": scores}, 0.5)


def _ties() -> dict[str, Tensor]:
    """Equal scores: ties keep the input order."""
    inputs = clustered_boxes(12, 21, clusters=2)
    inputs["scores"] = torch.tensor([0.5, 0.9, 0.5, 0.5, 0.9, 0.3, 0.5, 0.9, 0.3, 0.5, 0.1, 0.5])
    return with_threshold(inputs, 0.4)


CASES: dict[str, Callable[[], dict[str, Tensor]]] = {
    "clustered_t0.5": lambda: with_threshold(clustered_boxes(30, 1), 0.5),
    "clustered_t0.3": lambda: with_threshold(clustered_boxes(40, 2), 0.3),
    "clustered_t0.7": lambda: with_threshold(clustered_boxes(40, 3), 0.7),
    "many_boxes": lambda: with_threshold(clustered_boxes(300, 4, clusters=12), 0.5),
    "iou_exactly_at_threshold": _boundary,
    "tied_scores": _ties,
    "single_box": lambda: with_threshold(clustered_boxes(1, 5), 0.5),
    "empty": lambda: with_threshold({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}, 0.5),
    "unsorted_far_apart": lambda: with_threshold(
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110], [50, 0, 60, 10]]),
            "scores": torch.tensor([0.2, 0.9, 0.5]),
        },
        0.5,
    ),
}


def _params(inputs: dict[str, Tensor]) -> dict:
    return {
        "module": "nms",
        "function": "nms",
        "args": ["boxes", "scores"],
        "kwargs": {"iou_threshold": float(inputs["iou_threshold"])},
    }


@pytest.mark.parametrize("case", cases(CASES, edge={"single_box", "empty", "unsorted_far_apart"}))
def test_nms_matches_reference(case: str, student: SandboxClient, ref: ModuleType) -> None:
    inputs = CASES[case]()
    call_inputs = {k: v for k, v in inputs.items() if k != "iou_threshold"}
    out = student.call("call_function", call_inputs, **_params(inputs), forbid_library_ops=True)
    expected = probes.call_function(ref, call_inputs, **_params(inputs), device="cpu")["out"]
    what = "nms(boxes, scores, iou_threshold)"
    if int(out["meta.library_calls"]):
        raise Fail(f"{what} calls library box operations: write it yourself")
    assert_on_device(out, what)
    assert_equal_indices(
        out.get("out"), expected, what=what, inputs=inputs, hints=NMS_SIGNATURES,
        explain=lambda kept: nms_properties(kept, inputs),
    )


@pytest.mark.edge_case
def test_nms_is_own_code(student: SandboxClient) -> None:
    findings = find_library_box_ops(student.source("nms"), "nms.py")
    if findings:
        raise Fail("nms must be your own code, without torchvision box operations: " + "; ".join(findings))
