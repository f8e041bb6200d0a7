"""Signatures of ``get_fpn_location_coords`` (Tensor[H*W, 2] (x, y) centres) and
``generate_fpn_anchors`` (Tensor[H*W*A, 4] XYXY, location-major).

Mistakes here combine (x and y swapped *and* the wrong order, say), so each detector
tries every combination of the known transforms of the expected output and names all
the transforms of the combination that matches.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import Tensor

from autograder.feedback.core import Signature, box_wh, join_hints, matches, same_rows_as_set

HINT_XY_SWAPPED = "x and y are swapped: each row is (x, y) with x the column centre and y the row centre"
HINT_COLUMN_MAJOR = "the right locations in the wrong order: go row by row (y outer, x inner), i.e. x varies fastest"
HINT_SWAP_OR_ORDER = (
    "each row must be (x, y) in row-major order (x varies fastest): x and y look swapped, or the order is "
    "column-major"
)
HINT_NOT_CENTRED = "locations must be cell centres: (index + 0.5) * stride, not the top-left corner"
HINT_NO_STRIDE = "multiply the cell index (plus 0.5) by the level's stride: locations are in image pixels"


def _column_major(coords: Tensor, height: int, width: int) -> Tensor:
    """Reorder row-major Tensor[H*W, D] rows (x fastest) into column-major order (y fastest)."""
    return coords.reshape(height, width, -1).transpose(0, 1).reshape(height * width, -1)


def coords_combined(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Any combination of: x/y swapped, column-major order, corner instead of centre, no stride."""
    if actual.shape != expected.shape or actual.dim() != 2 or actual.numel() == 0:
        return None
    stride = float(inputs["stride"])
    size = (int(inputs["height"]), int(inputs["width"])) if "height" in inputs and "width" in inputs else None
    found: list[tuple[str, ...]] = []
    for swap, column, offset, unscaled in itertools.product((False, True), (False, True), (0.0, -0.5, 0.5), (False, True)):
        if not (swap or column or offset or unscaled) or (column and size is None):
            continue
        candidate = expected.double()
        if unscaled:
            candidate = candidate / stride
        candidate = candidate + offset * (1.0 if unscaled else stride)
        if column:
            candidate = _column_major(candidate, *size)  # type: ignore[misc]
        if swap:
            candidate = candidate[:, [1, 0]]
        if matches(candidate, actual):
            names = (
                *(["swap"] if swap else []), *(["column"] if column else []),
                *(["offset"] if offset else []), *(["unscaled"] if unscaled else []),
            )
            found.append(names)
    if not found:
        return None
    simplest = min(found, key=len)
    if {("swap",), ("column",)} <= set(found):  # square map: the two mistakes look the same
        return HINT_SWAP_OR_ORDER
    texts = {"swap": HINT_XY_SWAPPED, "column": HINT_COLUMN_MAJOR, "offset": HINT_NOT_CENTRED, "unscaled": HINT_NO_STRIDE}
    return join_hints([texts[name] for name in simplest])


def coords_order(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The right centres in some other order than row-major."""
    if same_rows_as_set(actual, expected) and not matches(expected, actual):
        return HINT_COLUMN_MAJOR
    return None


def coords_xy_swapped(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    if matches(expected[:, [1, 0]], actual):
        return HINT_XY_SWAPPED
    return None


def coords_not_centred(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    stride = float(inputs["stride"])
    for offset in (stride / 2, -stride / 2):
        if matches(expected - offset, actual):
            return HINT_NOT_CENTRED
    return None


COORDS_SIGNATURES: tuple[Signature, ...] = (coords_combined, coords_order)


# ----------------------------------------------------------------------------------------
# Anchors
# ----------------------------------------------------------------------------------------

HINT_WH_SWAPPED = "anchor width and height are swapped: aspect_ratio is height / width, so width = sqrt(area / ratio)"
HINT_RATIO_MAJOR = (
    "the right anchors in the wrong order: location-major order is needed, all aspect "
    "ratios of location 0 first, then those of location 1, ..."
)
HINT_WRONG_SIZE = "anchor areas are off by a constant factor: the base size is stride * stride_scale, area = size ** 2"


def _swap_wh(boxes: Tensor) -> Tensor:
    """Tensor[R, 4] XYXY boxes with width and height exchanged around the same centres."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = box_wh(boxes)
    return torch.stack([cx - h / 2, cy - w / 2, cx + h / 2, cy + w / 2], dim=1)  # (R, 4)


def anchors_combined(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Width/height swapped and/or ratio-major order (needs ``num_ratios`` for the order)."""
    if actual.shape != expected.shape or actual.dim() != 2 or actual.numel() == 0:
        return None
    ratios = int(inputs["num_ratios"]) if "num_ratios" in inputs else None
    for swap, ratio_major in ((True, False), (False, True), (True, True)):
        if ratio_major and (ratios is None or ratios < 2):
            continue
        candidate = expected.double()
        if swap:
            candidate = _swap_wh(candidate)
        if ratio_major:
            candidate = candidate.reshape(-1, ratios, 4).transpose(0, 1).reshape(-1, 4)  # (HW, A, 4) -> (A*HW, 4)
        if matches(candidate, actual) and not matches(expected, actual):
            return join_hints([*([HINT_WH_SWAPPED] if swap else []), *([HINT_RATIO_MAJOR] if ratio_major else [])])
    return None


def anchors_wh_swapped(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    if matches(_swap_wh(expected), actual) and not matches(expected, actual):
        return HINT_WH_SWAPPED
    return None


def anchors_order(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    if same_rows_as_set(actual, expected) and not matches(expected, actual):
        return HINT_RATIO_MAJOR
    return None


def anchors_wrong_size(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Same centres and aspect ratios, areas scaled by one constant factor (compared as sorted sets)."""
    if actual.shape != expected.shape or actual.numel() == 0:
        return None
    aw, ah = box_wh(actual.double())
    ew, eh = box_wh(expected.double())
    centres_ok = matches(
        torch.sort((actual[:, :2] + actual[:, 2:]).double().sum(dim=1)).values,
        torch.sort((expected[:, :2] + expected[:, 2:]).double().sum(dim=1)).values,
    )
    a_area, e_area = torch.sort(aw * ah).values, torch.sort(ew * eh).values
    if centres_ok and not matches(a_area, e_area) and bool((a_area > 0).all()):
        if matches(a_area / a_area.max(), e_area / e_area.max()):
            return HINT_WRONG_SIZE
    return None


ANCHOR_SIGNATURES: tuple[Signature, ...] = (anchors_combined, anchors_order, anchors_wrong_size)
