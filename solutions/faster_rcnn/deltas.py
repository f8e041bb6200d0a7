"""Box deltas: encode a GT box relative to an anchor, and decode it back.

A delta ``(dx, dy, dw, dh)`` moves an anchor with centre ``(px, py)`` and size
``(pw, ph)`` to the box with centre ``(px + dx * pw, py + dy * ph)`` and size
``(pw * exp(dw), ph * exp(dh))`` (Faster R-CNN, Ren et al. 2015, eq. 2).
"""

from __future__ import annotations

import math  # noqa: F401  (given: the stub has always offered math.log / math.exp)

import torch

# The course's constants (rcnn_kit/course.py, the one home of the course's facts):
# DELTA_SCALE_CLAMP is the largest dw/dh allowed before exp() when decoding (a box may
# grow at most 224 / 8 = 28 times its anchor, image size over the smallest stride), which
# keeps exp() finite for wild early-training predictions; IGNORED_DELTA (-1e8) marks the
# deltas of anchors matched to background (-1 rows) or left neutral (-1e8 rows), which
# the losses ignore.
from rcnn_kit.course import DELTA_SCALE_CLAMP, IGNORED_DELTA

__all__ = ["DELTA_SCALE_CLAMP", "IGNORED_DELTA", "clip_boxes_to_image", "rcnn_apply_deltas_to_anchors",
           "rcnn_get_deltas_from_anchors"]


def _centres_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split Tensor[N, 4] XYXY boxes into centres and sizes, each Tensor[N]."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def rcnn_get_deltas_from_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Deltas that transform each anchor into its matched GT box.

    Args:
        anchors: Tensor[N, 4], anchor boxes in (x1, y1, x2, y2) format.
        gt_boxes: Tensor[N, 4] or Tensor[N, 5] (extra class column ignored), the
            GT box matched to each anchor in (x1, y1, x2, y2) format. A row whose
            four coordinates are all -1 (background) or all -1e8 (neutral) has
            no target. Never read column 4: it may not exist; tell background
            and neutral rows from the four coordinates.

    Returns:
        Tensor[N, 4] of ``(dx, dy, dw, dh)``: ``dx = (gx - px) / pw``,
        ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``, ``dh = log(gh / ph)``, where
        ``(px, py, pw, ph)`` and ``(gx, gy, gw, gh)`` are the centres and sizes of
        the anchor and the GT box. Rows without a target are exactly -1e8.
    """
    if anchors.dim() != 2 or anchors.shape[-1] != 4:
        raise ValueError(f"anchors: expected Tensor[N, 4], got shape {tuple(anchors.shape)}")
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] not in (4, 5) or gt_boxes.shape[0] != anchors.shape[0]:
        raise ValueError(
            f"gt_boxes: expected Tensor[{anchors.shape[0]}, 4] or Tensor[{anchors.shape[0]}, 5], "
            f"got shape {tuple(gt_boxes.shape)}"
        )
    # Convert both box sets to centres and sizes, compute the four deltas, then
    # set every row whose GT coordinates are all -1 or all -1e8 to -1e8.
    ### BEGIN SOLUTION
    gt_xyxy = gt_boxes[:, :4]
    px, py, pw, ph = _centres_and_sizes(anchors)
    gx, gy, gw, gh = _centres_and_sizes(gt_xyxy)
    no_target = (gt_xyxy == -1).all(dim=1) | (gt_xyxy == IGNORED_DELTA).all(dim=1)  # (N,)
    # Rows without a target may hold non-positive sizes: take the logs of safe
    # values there so no NaN or inf is ever computed, then overwrite them.
    safe_gw = torch.where(no_target, pw, gw)
    safe_gh = torch.where(no_target, ph, gh)
    deltas = torch.stack(
        [(gx - px) / pw, (gy - py) / ph, torch.log(safe_gw / pw), torch.log(safe_gh / ph)], dim=1
    )  # (N, 4)
    return deltas.masked_fill(no_target[:, None], IGNORED_DELTA)
    ### END SOLUTION


def rcnn_apply_deltas_to_anchors(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rcnn_get_deltas_from_anchors`: move anchors by deltas.

    Args:
        deltas: Tensor[N, 4] of ``(dx, dy, dw, dh)``.
        anchors: Tensor[N, 4], anchor boxes in (x1, y1, x2, y2) format.

    Returns:
        Tensor[N, 4], the decoded boxes in (x1, y1, x2, y2) format. ``dw`` and
        ``dh`` are clamped to at most ``log(224 / 8)`` before ``exp``. The inputs
        are never modified in place: no ``clamp_`` and no assignment into a slice
        of ``deltas``.
    """
    if deltas.dim() != 2 or deltas.shape[-1] != 4:
        raise ValueError(f"deltas: expected Tensor[N, 4], got shape {tuple(deltas.shape)}")
    if anchors.shape != deltas.shape:
        raise ValueError(f"anchors: expected shape {tuple(deltas.shape)} to match deltas, got {tuple(anchors.shape)}")
    # Clamp dw and dh (without modifying `deltas`), move the anchor centres,
    # scale the anchor sizes, and convert back to (x1, y1, x2, y2).
    ### BEGIN SOLUTION
    px, py, pw, ph = _centres_and_sizes(anchors)
    dw = deltas[:, 2].clamp(max=DELTA_SCALE_CLAMP)
    dh = deltas[:, 3].clamp(max=DELTA_SCALE_CLAMP)
    cx = px + deltas[:, 0] * pw
    cy = py + deltas[:, 1] * ph
    half_w = 0.5 * pw * torch.exp(dw)
    half_h = 0.5 * ph * torch.exp(dh)
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)  # (N, 4)
    ### END SOLUTION


def clip_boxes_to_image(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clip XYXY boxes to the image (a new tensor; the input is left as it is).

    Args:
        boxes: Tensor[N, 4], boxes in (x1, y1, x2, y2) format.
        image_size: (height, width) in pixels: height first.

    Returns:
        Tensor[N, 4] with x in [0, width] and y in [0, height] (no ``- 1``).
    """
    height, width = image_size
    x = boxes[:, 0::2].clamp(0, width)  # (N, 2): x1, x2
    y = boxes[:, 1::2].clamp(0, height)  # (N, 2): y1, y2
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)  # (N, 4)
