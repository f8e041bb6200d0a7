"""Signatures of ``rcnn_get_deltas_from_anchors`` and ``rcnn_apply_deltas_to_anchors``.

Each decoder/encoder mistake is a flag of one small formula; the detectors try the
combinations of flags, so two mistakes in one function are both named.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import Tensor

from autograder.feedback.core import DELTA_SCALE_CLAMP, IGNORED_DELTA, Signature, box_wh, join_hints, matches


def _centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(cx, cy, w, h), each Tensor[N], of Tensor[N, 4] XYXY boxes."""
    w, h = box_wh(boxes)
    return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


# ----------------------------------------------------------------------------------------
# Encoding: rcnn_get_deltas_from_anchors (rows with a target only; ignored rows are checked apart)
# ----------------------------------------------------------------------------------------

HINT_CORNERS = "dx and dy are offsets between box centres divided by the anchor width/height, not between corners"
HINT_LOG_INVERTED = "dw and dh are log(GT width / anchor width) and log(GT height / anchor height), not the inverse"
HINT_NO_LOG = "dw and dh are the logs of the size ratios: dw = log(gw / pw), dh = log(gh / ph)"
HINT_GT_SIZE = "divide the centre offsets by the anchor's width and height (pw, ph), not the GT box's"

_ENCODE_FLAGS = ("corners", "inverted", "no_log", "gt_size")
_ENCODE_HINTS = {"corners": HINT_CORNERS, "inverted": HINT_LOG_INVERTED, "no_log": HINT_NO_LOG, "gt_size": HINT_GT_SIZE}


def encode_variant(anchors: Tensor, gt: Tensor, flags: set[str]) -> Tensor:
    """Tensor[N, 4] deltas of Tensor[N, 4] anchors towards Tensor[N, 4] GT boxes, with the named mistakes."""
    px, py, pw, ph = _centres(anchors.double())
    gx, gy, gw, gh = _centres(gt.double())
    if "corners" in flags:
        px, py, gx, gy = anchors[:, 0].double(), anchors[:, 1].double(), gt[:, 0].double(), gt[:, 1].double()
    sw, sh = (gw, gh) if "gt_size" in flags else (pw, ph)
    rw, rh = (pw / gw, ph / gh) if "inverted" in flags else (gw / pw, gh / ph)
    dw, dh = (rw, rh) if "no_log" in flags else (torch.log(rw), torch.log(rh))
    return torch.stack([(gx - px) / sw, (gy - py) / sh, dw, dh], dim=1)  # (N, 4)


def deltas_encode_combined(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Any combination of up to two encoding mistakes (see :data:`_ENCODE_FLAGS`)."""
    if actual.shape != expected.shape or actual.dim() != 2 or actual.numel() == 0:
        return None
    anchors, gt = inputs["anchors"], inputs["gt_boxes"][:, :4]
    for size in (1, 2):
        for flags in itertools.combinations(_ENCODE_FLAGS, size):
            if "inverted" in flags and "no_log" in flags:
                continue
            variant = encode_variant(anchors, gt, set(flags))
            if matches(variant.to(actual.dtype), actual):
                return join_hints([_ENCODE_HINTS[f] for f in flags])
    return None


def deltas_from_corners(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """dx, dy computed from the top-left corners instead of the box centres (rows with a target only)."""
    variant = encode_variant(inputs["anchors"], inputs["gt_boxes"][:, :4], {"corners"})
    if actual.numel() and actual.dim() == 2 and matches(variant[:, :2].to(actual.dtype), actual[:, :2]):
        return HINT_CORNERS
    return None


def deltas_log_inverted(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """dw, dh computed as log(anchor size / GT size) (sign flipped)."""
    if actual.numel() and matches(-expected[:, 2:], actual[:, 2:]) and matches(expected[:, :2], actual[:, :2]):
        return HINT_LOG_INVERTED
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


def deltas_marked_foreground(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Rows with a real GT box set to -1e8 (a background/neutral test that also catches foreground rows)."""
    if actual.dim() == 2 and actual.numel() and bool((actual == IGNORED_DELTA).all(dim=1).any()):
        return (
            "some rows with a real GT box are -1e8: only rows whose four GT coordinates are all -1 or all -1e8 "
            "have no target"
        )
    return None


DELTAS_GET_SIGNATURES: tuple[Signature, ...] = (deltas_marked_foreground, deltas_encode_combined, deltas_log_inverted)


# ----------------------------------------------------------------------------------------
# Decoding: rcnn_apply_deltas_to_anchors
# ----------------------------------------------------------------------------------------

HINT_NO_CLAMP = "clamp dw and dh at log(224 / 8) before exp, so that wild deltas cannot blow boxes up"
HINT_MOVE_CORNERS = "move the anchor centre by (dx * pw, dy * ph) and convert back to corners, not the corners directly"
HINT_NO_EXP = "the new width and height are pw * exp(dw) and ph * exp(dh), not pw * dw and ph * dh"
HINT_UNSCALED_SHIFT = "the centre moves by dx * pw and dy * ph (the offsets are relative to the anchor size)"
HINT_FULL_SIZE = "the corners are the centre -/+ half the new width and height, not the full size"

_DECODE_FLAGS = ("no_clamp", "corners", "no_exp", "unscaled_shift", "full_size")
_DECODE_HINTS = {
    "no_clamp": HINT_NO_CLAMP, "corners": HINT_MOVE_CORNERS, "no_exp": HINT_NO_EXP,
    "unscaled_shift": HINT_UNSCALED_SHIFT, "full_size": HINT_FULL_SIZE,
}


def decode_variant(deltas: Tensor, anchors: Tensor, flags: set[str]) -> Tensor:
    """Tensor[N, 4] XYXY boxes from Tensor[N, 4] deltas at Tensor[N, 4] anchors, with the named mistakes."""
    deltas, anchors = deltas.double(), anchors.double()
    px, py, pw, ph = _centres(anchors)
    dw, dh = deltas[:, 2], deltas[:, 3]
    if "no_clamp" not in flags:
        dw, dh = dw.clamp(max=DELTA_SCALE_CLAMP), dh.clamp(max=DELTA_SCALE_CLAMP)
    shift_x, shift_y = (deltas[:, 0], deltas[:, 1]) if "unscaled_shift" in flags else (deltas[:, 0] * pw, deltas[:, 1] * ph)
    w, h = (pw * dw, ph * dh) if "no_exp" in flags else (pw * torch.exp(dw), ph * torch.exp(dh))
    if "corners" in flags:
        x1, y1 = anchors[:, 0] + shift_x, anchors[:, 1] + shift_y
        return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)  # (N, 4)
    half = 1.0 if "full_size" in flags else 0.5
    cx, cy = px + shift_x, py + shift_y
    return torch.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], dim=1)  # (N, 4)


def deltas_decode_combined(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """Any combination of up to two decoding mistakes (see :data:`_DECODE_FLAGS`)."""
    if actual.shape != expected.shape or actual.dim() != 2 or actual.numel() == 0:
        return None
    for size in (1, 2):
        for flags in itertools.combinations(_DECODE_FLAGS, size):
            variant = decode_variant(inputs["deltas"], inputs["anchors"], set(flags))
            if not torch.isfinite(variant).all():
                if "no_clamp" in flags and not torch.isfinite(actual).all():
                    return join_hints([_DECODE_HINTS[f] for f in flags])
                continue
            if matches(variant.to(actual.dtype), actual):
                return join_hints([_DECODE_HINTS[f] for f in flags])
    return None


def deltas_apply_no_clamp(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """dw, dh not clamped before exp: boxes far larger than the reference's where a clamp applies."""
    deltas = inputs["deltas"].double()
    clamped = deltas[:, 2:] > DELTA_SCALE_CLAMP
    if clamped.any() and actual.shape == expected.shape:
        aw, ah = box_wh(actual.double())
        ew, eh = box_wh(expected.double())
        rows = clamped.any(dim=1)
        if bool(((aw[rows] > 1.5 * ew[rows]) | (ah[rows] > 1.5 * eh[rows])).all()) or not torch.isfinite(actual).all():
            return HINT_NO_CLAMP
    return None


def deltas_apply_corners(actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    """The anchors' corners were moved instead of their centres."""
    variant = decode_variant(inputs["deltas"], inputs["anchors"], {"corners"})
    if actual.numel() and actual.dim() == 2 and matches(variant[:, :2].to(actual.dtype), actual[:, :2]):
        return HINT_MOVE_CORNERS
    return None


DELTAS_APPLY_SIGNATURES: tuple[Signature, ...] = (deltas_decode_combined, deltas_apply_no_clamp, deltas_apply_corners)
