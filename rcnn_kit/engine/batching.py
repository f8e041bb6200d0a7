"""Turn dataset items into model inputs.

The kit's datasets (:mod:`rcnn_kit.data.datasets`) return items
``(image_path: str, image: Tensor[3, S, S], gt_boxes: Tensor[40, 5])``; the engine
accepts exactly that layout and checks it, so a custom dataset with another layout
fails with a message that says what was expected.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

#: Columns of a GT row: (x1, y1, x2, y2, class).
GT_COLUMNS = 5


def split_item(item: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image_path, image, gt_boxes)`` -> ``(image Tensor[3, H, W], gt_boxes Tensor[N, 5])``.

    Raises:
        TypeError: ``item`` does not have the documented layout.
        ValueError: a tensor has the wrong shape.
    """
    if not (isinstance(item, (tuple, list)) and len(item) == 3):
        raise TypeError(
            "dataset item: expected (image_path, image Tensor[3, H, W], gt_boxes Tensor[N, 5]), "
            f"got {type(item).__name__}" + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        )
    _, image, gt = item
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"dataset item: image must be Tensor[3, H, W], got {shape}")
    if not isinstance(gt, torch.Tensor) or gt.dim() != 2 or gt.shape[1] != GT_COLUMNS:
        shape = tuple(gt.shape) if isinstance(gt, torch.Tensor) else type(gt).__name__
        raise ValueError(f"dataset item: gt_boxes must be Tensor[N, {GT_COLUMNS}], got {shape}")
    return image, gt


def collate_detection(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack dataset items into a batch.

    Args:
        items: dataset items ``(image_path, image Tensor[3, H, W], gt_boxes Tensor[N, 5])``,
            all with the same ``H``, ``W`` and ``N``.

    Returns:
        ``(images Tensor[B, 3, H, W], gt_boxes Tensor[B, N, 5])``.

    Raises:
        ValueError: the items' shapes differ.
    """
    pairs = [split_item(item) for item in items]
    image_shapes = {tuple(image.shape) for image, _ in pairs}
    gt_shapes = {tuple(gt.shape) for _, gt in pairs}
    if len(image_shapes) > 1 or len(gt_shapes) > 1:
        raise ValueError(
            f"dataset items: all images and GT tensors of a batch must share a shape, got image shapes "
            f"{sorted(image_shapes)} and gt_boxes shapes {sorted(gt_shapes)}"
        )
    images = torch.stack([image for image, _ in pairs])  # B x (3, H, W) -> (B, 3, H, W)
    gt_boxes = torch.stack([gt.float() for _, gt in pairs])  # B x (N, 5) -> (B, N, 5)
    return images, gt_boxes
