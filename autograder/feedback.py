"""Student-facing failures and the signatures of known mistakes.

A hidden check that finds a difference raises :class:`Fail`; its first line is what the
student sees. When the difference matches a known bug signature, the message names the
likely mistake. A signature is a function ``(actual, expected, inputs) -> str | None``:

- ``actual``: the student's output (CPU tensor, same shape and dtype as ``expected``);
- ``expected``: the reference output for the same inputs;
- ``inputs``: the hidden inputs (never printed; used only to recompute a buggy variant).

It returns a hint when the student's output is what the buggy variant would give, else
None. The detectors recompute each buggy variant from the inputs with a few lines of
independent code, so they do not depend on how the student wrote the function.

All boxes are XYXY float pixels without the +1 convention.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from autograder.compare import Fail, rel_error

__all__ = ["Fail", "Signature", "first_hint", "find_library_box_ops"]

#: Signature detector type: (student output, reference output, inputs) -> hint or None.
Signature = Callable[[Tensor, Tensor, Mapping[str, Tensor]], "str | None"]

#: Relative error under which a recomputed buggy variant counts as a match.
SIGNATURE_TOL = 1e-4

#: Value the deltas use for rows that must not contribute (background or neutral GT).
IGNORED_DELTA = -1e8

#: Largest dw, dh before exp() in the specification of rcnn_apply_deltas_to_anchors.
DELTA_SCALE_CLAMP = math.log(224 / 8)


def _matches(candidate: Tensor, actual: Tensor) -> bool:
    """True when ``candidate`` (a recomputed buggy variant) equals ``actual`` closely."""
    return candidate.shape == actual.shape and rel_error(candidate, actual) <= SIGNATURE_TOL


def first_hint(
    signatures: Sequence[Signature], actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]
) -> str | None:
    """The hint of the first signature in ``signatures`` that matches, or None."""
    for signature in signatures:
        hint = signature(actual, expected, inputs)
        if hint is not None:
            return hint
    return None


# ----------------------------------------------------------------------------------------
# IoU
# ----------------------------------------------------------------------------------------


def _iou_variant(b1: Tensor, b2: Tensor, *, plus_one: bool = False, subtract_inter: bool = True) -> Tensor:
    """IoU of Tensor[M, 4] x Tensor[N, 4] XYXY boxes -> Tensor[M, N], with a chosen convention."""
    b1, b2 = b1.double(), b2.double()
    one = 1.0 if plus_one else 0.0
    area1 = (b1[:, 2] - b1[:, 0] + one) * (b1[:, 3] - b1[:, 1] + one)  # (M,)
    area2 = (b2[:, 2] - b2[:, 0] + one) * (b2[:, 3] - b2[:, 1] + one)  # (N,)
    wh = (torch.minimum(b1[:, None, 2:], b2[None, :, 2:]) - torch.maximum(b1[:, None, :2], b2[None, :, :2]) + one)
    inter = wh.clamp(min=0).prod(dim=-1)  # (M, N)
    union = area1[:, None] + area2[None, :] - (inter if subtract_inter else 0.0)  # (M, N)
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def iou_out_of_range(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """IoU values above 1 or below 0: the intersection width/height was not clamped at 0."""
    if actual.numel() and (actual.max() > 1 + 1e-6 or actual.min() < -1e-6):
        return (
            "some IoU values are above 1 or negative: clamp the intersection width and height "
            "at 0 so that disjoint boxes have zero intersection"
        )
    return None


def iou_plus_one(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The +1 pixel convention (``x2 - x1 + 1``) was used."""
    if _matches(_iou_variant(inputs["boxes1"], inputs["boxes2"], plus_one=True).to(actual.dtype), actual):
        return "widths and heights look computed as x2 - x1 + 1: boxes are continuous coordinates, use x2 - x1"
    return None


def iou_union_keeps_intersection(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The union was computed as area1 + area2 without subtracting the intersection."""
    variant = _iou_variant(inputs["boxes1"], inputs["boxes2"], subtract_inter=False).to(actual.dtype)
    if _matches(variant, actual):
        return "the union must subtract the intersection: union = area1 + area2 - intersection"
    return None


IOU_SIGNATURES: tuple[Signature, ...] = (iou_out_of_range, iou_plus_one, iou_union_keeps_intersection)


# ----------------------------------------------------------------------------------------
# NMS (outputs are Tensor[K] int64 indices into the input boxes)
# ----------------------------------------------------------------------------------------


def _greedy_nms(boxes: Tensor, scores: Tensor, threshold: float, *, suppress_equal: bool, by_score: bool = True) -> Tensor:
    """Slow greedy NMS oracle: Tensor[N, 4] XYXY, Tensor[N] -> kept indices Tensor[K] int64."""
    order = torch.argsort(scores.double(), descending=True, stable=True) if by_score else torch.arange(len(scores))
    ious = _iou_variant(boxes, boxes)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep: list[int] = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        row = ious[i]
        suppressed |= (row >= threshold) if suppress_equal else (row > threshold)
    return torch.tensor(keep, dtype=torch.int64)


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool((a.long() == b.long()).all())


def nms_threshold_boundary(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The student compares IoU with the threshold using the other of ``>`` / ``>=``."""
    boxes, scores, thr = inputs["boxes"], inputs["scores"], float(inputs["iou_threshold"])
    for suppress_equal in (True, False):
        variant = _greedy_nms(boxes, scores, thr, suppress_equal=suppress_equal)
        if _same(variant, actual) and not _same(variant, expected):
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
    if _same(position[expected.long()], actual) and not _same(expected, actual):
        return "return indices into the input boxes, not positions in the score-sorted order"
    return None


def nms_ignores_scores(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Boxes were visited in input order instead of by decreasing score."""
    if _same(actual, expected):
        return None
    threshold = float(inputs["iou_threshold"])
    variant = _greedy_nms(inputs["boxes"], inputs["scores"], threshold, suppress_equal=False, by_score=False)
    if _same(variant, actual) or _same(torch.sort(variant).values, torch.sort(actual.long()).values):
        return "visit the boxes by decreasing score and return the kept indices in that order"
    return None


def nms_unordered(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The right boxes are kept but not listed by decreasing score."""
    if _same(actual, expected):
        return None
    if actual.shape == expected.shape and _same(torch.sort(actual.long()).values, torch.sort(expected).values):
        return "the kept boxes are right but must be returned in decreasing order of score"
    return None


NMS_SIGNATURES: tuple[Signature, ...] = (nms_threshold_boundary, nms_sorted_positions, nms_unordered, nms_ignores_scores)


# ----------------------------------------------------------------------------------------
# Location coordinates (Tensor[H*W, 2] (x, y) centres) and anchors (Tensor[H*W*A, 4] XYXY)
# ----------------------------------------------------------------------------------------


def _same_rows_as_set(actual: Tensor, expected: Tensor) -> bool:
    """True when both Tensor[R, D] hold the same rows in some order (values compared on a fine grid)."""
    if actual.shape != expected.shape or actual.dim() != 2 or actual.numel() == 0:
        return False
    scale = max(float(actual.abs().max()), float(expected.abs().max()), 1.0)

    def sorted_keys(t: Tensor) -> Tensor:
        keys = torch.round(t.double() / scale / SIGNATURE_TOL).long()  # (R, D) integers
        for col in reversed(range(keys.shape[1])):  # lexicographic sort, column 0 most significant
            keys = keys[torch.argsort(keys[:, col], stable=True)]
        return keys

    return torch.equal(sorted_keys(actual), sorted_keys(expected))


def coords_xy_swapped(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    if _matches(expected[:, [1, 0]], actual):
        return "x and y are swapped: each row is (x, y) with x the column centre and y the row centre"
    return None


def coords_not_centred(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    stride = float(inputs["stride"])
    for offset in (stride / 2, -stride / 2):
        if _matches(expected - offset, actual):
            return "locations must be cell centres: (index + 0.5) * stride, not the top-left corner"
    return None


def coords_order(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    if _same_rows_as_set(actual, expected) and not _matches(expected, actual):
        return "the right locations in the wrong order: go row by row (y outer, x inner), i.e. x varies fastest"
    return None


COORDS_SIGNATURES: tuple[Signature, ...] = (coords_xy_swapped, coords_not_centred, coords_order)


def _wh(boxes: Tensor) -> tuple[Tensor, Tensor]:
    return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def anchors_wh_swapped(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    cx, cy = (expected[:, 0] + expected[:, 2]) / 2, (expected[:, 1] + expected[:, 3]) / 2
    w, h = _wh(expected)
    swapped = torch.stack([cx - h / 2, cy - w / 2, cx + h / 2, cy + w / 2], dim=1)  # (R, 4)
    if _matches(swapped, actual) and not _matches(expected, actual):
        return "anchor width and height are swapped: aspect_ratio is height / width, so width = sqrt(area / ratio)"
    return None


def anchors_order(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    if _same_rows_as_set(actual, expected) and not _matches(expected, actual):
        return (
            "the right anchors in the wrong order: location-major order is needed, all aspect "
            "ratios of location 0 first, then those of location 1, ..."
        )
    return None


def anchors_wrong_size(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    aw, ah = _wh(actual.double())
    ew, eh = _wh(expected.double())
    centres_ok = _matches(actual[:, :2] + actual[:, 2:], expected[:, :2] + expected[:, 2:])
    if centres_ok and _matches(aw * ah / (aw * ah).max(), ew * eh / (ew * eh).max()) and not _matches(aw * ah, ew * eh):
        return "anchor areas are off by a constant factor: the base size is stride * stride_scale, area = size ** 2"
    return None


ANCHOR_SIGNATURES: tuple[Signature, ...] = (anchors_wh_swapped, anchors_order, anchors_wrong_size)


# ----------------------------------------------------------------------------------------
# Deltas
# ----------------------------------------------------------------------------------------


def deltas_from_corners(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """dx, dy computed from the top-left corners instead of the box centres (rows with a target only)."""
    anchors, gt = inputs["anchors"].double(), inputs["gt_boxes"][:, :4].double()
    pw, ph = _wh(anchors)
    variant = torch.stack([(gt[:, 0] - anchors[:, 0]) / pw, (gt[:, 1] - anchors[:, 1]) / ph], dim=1)  # (N, 2)
    if actual.numel() and _matches(variant.to(actual.dtype), actual[:, :2]):
        return "dx and dy are offsets between box centres divided by the anchor width/height, not between corners"
    return None


def deltas_log_inverted(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """dw, dh computed as log(anchor size / GT size) (sign flipped)."""
    if actual.numel() and _matches(-expected[:, 2:], actual[:, 2:]) and _matches(expected[:, :2], actual[:, :2]):
        return "dw and dh are log(GT width / anchor width) and log(GT height / anchor height), not the inverse"
    return None


def deltas_ignored_rows(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Rows without a target (background -1 or neutral -1e8 GT) are not exactly -1e8."""
    gt = inputs["gt_boxes"][:, :4]
    wrong = ~(actual == IGNORED_DELTA).all(dim=1)  # (N,)
    kinds = []
    if (wrong & (gt == -1).all(dim=1)).any():
        kinds.append("background (GT row all -1)")
    if (wrong & (gt == IGNORED_DELTA).all(dim=1)).any():
        kinds.append("neutral (GT row all -1e8)")
    if kinds:
        return f"rows whose GT is {' or '.join(kinds)} must be -1e8 in all four columns"
    return None


DELTAS_GET_SIGNATURES: tuple[Signature, ...] = (deltas_from_corners, deltas_log_inverted)


def deltas_apply_no_clamp(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """dw, dh not clamped before exp: boxes far larger than the reference's."""
    deltas = inputs["deltas"].double()
    clamped = deltas[:, 2:] > DELTA_SCALE_CLAMP
    if clamped.any():
        aw, ah = _wh(actual.double())
        ew, eh = _wh(expected.double())
        rows = clamped.any(dim=1)
        if bool(((aw[rows] > 1.5 * ew[rows]) | (ah[rows] > 1.5 * eh[rows])).all()) or not torch.isfinite(actual).all():
            return "clamp dw and dh at log(224 / 8) before exp, so that wild deltas cannot blow boxes up"
    return None


def deltas_apply_corners(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The anchors' corners were moved instead of their centres."""
    deltas, anchors = inputs["deltas"].double(), inputs["anchors"].double()
    pw, ph = _wh(anchors)
    x1 = anchors[:, 0] + deltas[:, 0] * pw
    y1 = anchors[:, 1] + deltas[:, 1] * ph
    if actual.numel() and _matches(torch.stack([x1, y1], dim=1).to(actual.dtype), actual[:, :2]):
        return "move the anchor centre by (dx * pw, dy * ph) and convert back to corners, not the corners directly"
    return None


DELTAS_APPLY_SIGNATURES: tuple[Signature, ...] = (deltas_apply_no_clamp, deltas_apply_corners)


# ----------------------------------------------------------------------------------------
# Static scan: iou and nms must be the student's own
# ----------------------------------------------------------------------------------------

#: Names of library box operations students must not call in iou.py / nms.py.
FORBIDDEN_BOX_OPS: frozenset[str] = frozenset(
    {
        "box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou",
        "nms", "batched_nms", "box_area", "_box_inter_union",
    }
)

#: Modules students must not import from in iou.py / nms.py.
FORBIDDEN_MODULE_PREFIXES: tuple[str, ...] = ("torchvision.ops", "torchvision._C", "detectron2", "mmcv", "mmdet")


def find_library_box_ops(source: str, filename: str) -> list[str]:
    """Library box operations that ``source`` imports or calls (static scan, never imports it).

    Args:
        source: the text of the student's ``iou.py`` or ``nms.py``.
        filename: the file's name, used in the messages.

    Returns:
        One student-facing sentence per finding (empty when nothing was found). A file that
        does not parse is reported as such.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return [f"{filename} does not parse: {exc.msg} (line {exc.lineno})"]
    findings: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(FORBIDDEN_MODULE_PREFIXES):
                    findings.append(f"{filename} line {node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith(FORBIDDEN_MODULE_PREFIXES) or (
                module.startswith("torchvision") and any(a.name in FORBIDDEN_BOX_OPS | {"ops"} for a in node.names)
            ):
                findings.append(f"{filename} line {node.lineno} imports from {module}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_BOX_OPS:
            base = ast.unparse(node.value)
            if "torchvision" in base or base.endswith("ops"):
                findings.append(f"{filename} line {node.lineno} uses {base}.{node.attr}")
    return findings
