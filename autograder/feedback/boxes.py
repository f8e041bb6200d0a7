"""Signatures and property checks of ``iou`` and ``nms`` (box geometry on the hidden inputs)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from autograder.feedback.core import Signature, matches, same_indices


def iou_variant(b1: Tensor, b2: Tensor, *, plus_one: bool = False, subtract_inter: bool = True) -> Tensor:
    """IoU of Tensor[M, 4] x Tensor[N, 4] XYXY boxes -> Tensor[M, N] float64, with a chosen convention."""
    b1, b2 = b1.double(), b2.double()
    one = 1.0 if plus_one else 0.0
    area1 = (b1[:, 2] - b1[:, 0] + one) * (b1[:, 3] - b1[:, 1] + one)  # (M,)
    area2 = (b2[:, 2] - b2[:, 0] + one) * (b2[:, 3] - b2[:, 1] + one)  # (N,)
    wh = (torch.minimum(b1[:, None, 2:], b2[None, :, 2:]) - torch.maximum(b1[:, None, :2], b2[None, :, :2]) + one)
    inter = wh.clamp(min=0).prod(dim=-1)  # (M, N)
    union = area1[:, None] + area2[None, :] - (inter if subtract_inter else 0.0)  # (M, N)
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def _zero_union(inputs: Mapping[str, Tensor]) -> Tensor:
    """Tensor[M, N] bool: pairs whose union is zero (both boxes have zero area and no overlap)."""
    b1, b2 = inputs["boxes1"].double(), inputs["boxes2"].double()
    area1 = (b1[:, 2] - b1[:, 0]).clamp(min=0) * (b1[:, 3] - b1[:, 1]).clamp(min=0)
    area2 = (b2[:, 2] - b2[:, 0]).clamp(min=0) * (b2[:, 3] - b2[:, 1]).clamp(min=0)
    return (area1[:, None] + area2[None, :]) == 0


def iou_nan_on_zero_union(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """NaN (0 / 0) exactly where a pair has zero union."""
    if actual.shape != expected.shape or not torch.isnan(actual).any():
        return None
    nan = torch.isnan(actual)
    if bool(nan.any()) and bool((nan <= _zero_union(inputs)).all()):
        return (
            "a pair of zero-area boxes has zero union and gives 0 / 0 = NaN: return 0 where the union is 0 "
            "(torch.where(union > 0, inter / union, 0))"
        )
    return None


def iou_out_of_range(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """IoU values above 1 or below 0: the intersection width/height was not clamped at 0."""
    finite = actual[torch.isfinite(actual)]
    if finite.numel() and (finite.max() > 1 + 1e-6 or finite.min() < -1e-6):
        return (
            "some IoU values are above 1 or negative: clamp the intersection width and height "
            "at 0 so that disjoint boxes have zero intersection"
        )
    return None


def iou_plus_one(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The +1 pixel convention (``x2 - x1 + 1``) was used."""
    if matches(iou_variant(inputs["boxes1"], inputs["boxes2"], plus_one=True).to(actual.dtype), actual):
        return "widths and heights look computed as x2 - x1 + 1: boxes are continuous coordinates, use x2 - x1"
    return None


def iou_union_keeps_intersection(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The union was computed as area1 + area2 without subtracting the intersection."""
    variant = iou_variant(inputs["boxes1"], inputs["boxes2"], subtract_inter=False).to(actual.dtype)
    if matches(variant, actual):
        return "the union must subtract the intersection: union = area1 + area2 - intersection"
    return None


IOU_SIGNATURES: tuple[Signature, ...] = (
    iou_nan_on_zero_union, iou_out_of_range, iou_plus_one, iou_union_keeps_intersection,
)


# ----------------------------------------------------------------------------------------
# NMS (outputs are Tensor[K] int64 indices into the input boxes)
# ----------------------------------------------------------------------------------------


def greedy_nms(boxes: Tensor, scores: Tensor, threshold: float, *, suppress_equal: bool, by_score: bool = True) -> Tensor:
    """Slow greedy NMS oracle: Tensor[N, 4] XYXY, Tensor[N] -> kept indices Tensor[K] int64."""
    order = torch.argsort(scores.double(), descending=True, stable=True) if by_score else torch.arange(len(scores))
    ious = iou_variant(boxes, boxes)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep: list[int] = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        row = ious[i]
        suppressed |= (row >= threshold) if suppress_equal else (row > threshold)
    return torch.tensor(keep, dtype=torch.int64)


def nms_threshold_boundary(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The student compares IoU with the threshold using the other of ``>`` / ``>=``."""
    boxes, scores, thr = inputs["boxes"], inputs["scores"], float(inputs["iou_threshold"])
    for suppress_equal in (True, False):
        variant = greedy_nms(boxes, scores, thr, suppress_equal=suppress_equal)
        if same_indices(variant, actual) and not same_indices(variant, expected):
            return (
                "results differ only for boxes whose IoU equals the threshold exactly: a box is "
                "suppressed only when its IoU is strictly greater than iou_threshold (use >, not >=)"
            )
    return None


def nms_sorted_positions(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The student returned positions in the score-sorted order instead of box indices."""
    order = torch.argsort(inputs["scores"].double(), descending=True, stable=True)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))
    if same_indices(position[expected.long()], actual) and not same_indices(expected, actual):
        return "return indices into the input boxes, not positions in the score-sorted order"
    return None


def _input_order_greedy(inputs: Mapping[str, Tensor]) -> Tensor:
    """Greedy NMS visiting the boxes in input order (scores ignored)."""
    threshold = float(inputs["iou_threshold"])
    return greedy_nms(inputs["boxes"], inputs["scores"], threshold, suppress_equal=False, by_score=False)


def nms_ignores_scores_exact(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Boxes were visited (and returned) in input order instead of by decreasing score."""
    if not same_indices(actual, expected) and same_indices(_input_order_greedy(inputs), actual):
        return HINT_IGNORES_SCORES
    return None


def nms_ignores_scores(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The set kept by visiting boxes in input order (returned in any order)."""
    if same_indices(actual, expected):
        return None
    variant = _input_order_greedy(inputs)
    if same_indices(variant, actual) or same_indices(torch.sort(variant).values, torch.sort(actual.long()).values):
        return HINT_IGNORES_SCORES
    return None


def nms_positions_or_input_order(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Both "positions in the sorted order" and "input order" explain the answer (e.g. boxes far apart)."""
    if nms_sorted_positions(actual, expected, inputs) and nms_ignores_scores_exact(actual, expected, inputs):
        return (
            "return indices into boxes by decreasing score: this looks like positions in the score-sorted order, "
            "or boxes visited in input order"
        )
    return None


def nms_unordered(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The right boxes are kept but not listed by decreasing score."""
    if same_indices(actual, expected):
        return None
    if actual.shape == expected.shape and same_indices(torch.sort(actual.long()).values, torch.sort(expected).values):
        return "the kept boxes are right but must be returned in decreasing order of score"
    return None


HINT_IGNORES_SCORES = "visit the boxes by decreasing score and return the kept indices in that order"

NMS_SIGNATURES: tuple[Signature, ...] = (
    nms_threshold_boundary, nms_positions_or_input_order, nms_sorted_positions, nms_ignores_scores_exact,
    nms_unordered, nms_ignores_scores,
)


def nms_properties(actual: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Which rule of greedy NMS the student's kept indices break, in words (no hidden values).

    Checks, in order: indices out of range, repeated indices, kept boxes not in decreasing
    score order, two kept boxes overlapping by more than the threshold, and a dropped box
    that no kept box with a higher score overlaps by more than the threshold.
    """
    boxes, scores, thr = inputs["boxes"], inputs["scores"].double(), float(inputs["iou_threshold"])
    kept = actual.long().flatten()
    n = boxes.shape[0]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= n):
        return "some returned indices are not valid positions in boxes (0 .. N-1)"
    if kept.unique().numel() != kept.numel():
        return "some box indices are returned more than once"
    if kept.numel() > 1 and bool((scores[kept][1:] > scores[kept][:-1]).any()):
        return "the kept indices are not in decreasing order of score"
    ious = iou_variant(boxes, boxes)  # (N, N)
    if kept.numel() > 1:
        pair = ious[kept][:, kept] > thr
        pair.fill_diagonal_(False)
        if bool(pair.any()):
            return "two kept boxes overlap by more than iou_threshold: the lower-scoring one must be suppressed"
    dropped = torch.ones(n, dtype=torch.bool)
    dropped[kept] = False
    for i in dropped.nonzero().flatten().tolist():
        higher = kept[(scores[kept] > scores[i]) | ((scores[kept] == scores[i]) & (kept < i))]
        if higher.numel() == 0 or not bool((ious[i, higher] > thr).any()):
            return (
                "a box was dropped although no kept box with a higher score overlaps it by more than iou_threshold "
                "(only kept boxes suppress others)"
            )
    return None
