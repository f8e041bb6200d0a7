"""Pairwise intersection-over-union of axis-aligned boxes."""

from __future__ import annotations

import torch


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Compute the IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Args:
        boxes1: Tensor[M, 4], boxes in (x1, y1, x2, y2) format.
        boxes2: Tensor[N, 4], boxes in (x1, y1, x2, y2) format.

    Returns:
        Tensor[M, N] in the inputs' dtype (float64 in, float64 out): entry (i, j) is
        the IoU of ``boxes1[i]`` and ``boxes2[j]``, in [0, 1]. Disjoint or touching
        boxes give 0; a degenerate pair (zero union) gives 0, never NaN.
    """
    if boxes1.dim() != 2 or boxes1.shape[-1] != 4:
        raise ValueError(f"boxes1: expected Tensor[M, 4], got shape {tuple(boxes1.shape)}")
    if boxes2.dim() != 2 or boxes2.shape[-1] != 4:
        raise ValueError(f"boxes2: expected Tensor[N, 4], got shape {tuple(boxes2.shape)}")

    # Compute the intersection of every pair by broadcasting boxes1 as rows
    # (M, 1, 2) against boxes2 as columns (1, N, 2); clamp negative widths and
    # heights (disjoint boxes) to zero. Union = area1 + area2 - intersection.
    # Do not loop over boxes, and do not call torchvision.ops.
    ### BEGIN SOLUTION
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)  # (M,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)  # (N,)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (M, N, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (M, N, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (M, N, 2)
    inter = wh[..., 0] * wh[..., 1]  # (M, N)
    union = area1[:, None] + area2[None, :] - inter  # (M, N)
    # Where the union is zero the intersection is zero too: report 0, not NaN.
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))
    ### END SOLUTION
