"""Greedy non-maximum suppression, and its class-specific variant."""

from __future__ import annotations

import numpy as np
import torch

from .iou import iou


def _check_nms_inputs(boxes: torch.Tensor, scores: torch.Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes: expected Tensor[N, 4], got shape {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores: expected Tensor[{boxes.shape[0]}] to match boxes, got shape {tuple(scores.shape)}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Visit boxes from the highest score down; keep a box unless its IoU with an
    already kept box is strictly greater than ``iou_threshold``.

    Args:
        boxes: Tensor[N, 4], boxes in (x1, y1, x2, y2) format.
        scores: Tensor[N], one score per box.
        iou_threshold: suppress a box whose IoU with a kept box is > this value.

    Returns:
        Tensor[K] int64 on the input's device: indices into ``boxes`` of the kept
        boxes, in decreasing order of score (ties keep input order). Empty input
        gives an empty int64 tensor.
    """
    _check_nms_inputs(boxes, scores)
    # Sort by decreasing score (stably: tied boxes keep their input order) and
    # compute the IoU of every sorted pair once with your `iou`. Then apply the
    # greedy rule: the best box not yet suppressed is kept, and it suppresses every
    # lower-scoring box whose IoU with it is > iou_threshold; repeat down the list.
    # Return indices into the *input*, not into the sorted order, as int64 on the
    # input's device.
    ### BEGIN SOLUTION
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    sorted_boxes = boxes[order]  # (N, 4)
    # overlaps[i, j]: sorted boxes i and j overlap by more than the threshold.
    # The loop below does a tiny operation per box: on a NumPy array in host memory
    # that costs far less than on a tensor, and never waits on a GPU, so the mask
    # crosses to the CPU once.
    overlaps = (iou(sorted_boxes, sorted_boxes) > iou_threshold).cpu().numpy()  # (N, N)
    num_boxes = overlaps.shape[0]
    suppressed = np.zeros(num_boxes, dtype=bool)  # (N,)
    keep: list[int] = []  # positions in the sorted order
    for i in range(num_boxes):
        if suppressed[i]:
            continue
        # Box i is the best box left: keep it and suppress the later boxes it overlaps.
        keep.append(i)
        suppressed[i + 1 :] |= overlaps[i, i + 1 :]
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]
    ### END SOLUTION


def class_spec_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    class_ids: torch.Tensor,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """Run :func:`nms` independently per class (boxes of different classes never suppress each other).

    Args:
        boxes: Tensor[N, 4], boxes in (x1, y1, x2, y2) format.
        scores: Tensor[N], one score per box.
        class_ids: Tensor[N] integer class of each box.
        iou_threshold: as in :func:`nms`.

    Returns:
        Tensor[K] int64: indices of kept boxes, in decreasing order of score.
    """
    _check_nms_inputs(boxes, scores)
    if class_ids.shape != scores.shape:
        raise ValueError(f"class_ids: expected shape {tuple(scores.shape)}, got {tuple(class_ids.shape)}")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # Shift each class's boxes by a class-dependent offset larger than the span
    # of all coordinates, so boxes of different classes can never overlap; then a
    # single NMS call handles every class at once.
    span = boxes.max() - boxes.min() + 1
    offsets = class_ids.to(boxes) * span  # (N,)
    boxes_for_nms = boxes + offsets[:, None]
    return nms(boxes_for_nms, scores, iou_threshold)
