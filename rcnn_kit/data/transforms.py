"""Image and box preprocessing shared by every dataset and by the data scripts.

The course pipeline: resize the shorter side to ``S``, centre-crop ``S x S``,
apply the same scale and shift to the XYXY boxes, clamp them to the crop and
drop the ones left empty, then normalise with the ImageNet statistics.
torchvision.transforms.v2 does the geometry for the image and the boxes together.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

#: ImageNet channel statistics (RGB) that the backbone's weights expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Value of every entry of a padding row in a GT tensor.
PAD_VALUE = -1.0


def resize_and_crop(image: Image.Image, boxes: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Resize the shorter side to ``size``, centre-crop to ``size x size``, move the boxes along.

    Args:
        image: an RGB PIL image of any size.
        boxes: ``Tensor[N, 4]`` XYXY pixel boxes in the original image.
        size: the output side ``S`` in pixels.

    Returns:
        ``(image, boxes, keep)``: ``Tensor[3, S, S]`` uint8 image, ``Tensor[N, 4]``
        float32 XYXY boxes in crop pixels clamped to ``[0, S]``, and ``Tensor[N]``
        bool, False where a box became empty (zero width or height) in the crop.
    """
    width, height = image.size
    out_image, out_boxes = _geometry(size)(v2.functional.to_image(image), _tv_boxes(boxes, height, width))
    out_boxes = out_boxes.as_subclass(Tensor)
    return out_image.as_subclass(Tensor), out_boxes, _non_empty(out_boxes)


def transform_boxes(boxes: Tensor, height: int, width: int, size: int) -> tuple[Tensor, Tensor]:
    """The box half of :func:`resize_and_crop`, for an image of ``height x width`` not loaded.

    Args:
        boxes: ``Tensor[N, 4]`` XYXY pixel boxes in the original image.
        height: original image height in pixels.
        width: original image width in pixels.
        size: the output side ``S``.

    Returns:
        ``(boxes, keep)``: ``Tensor[N, 4]`` XYXY boxes in the ``S x S`` crop, ``Tensor[N]`` bool non-empty mask.
    """
    out_boxes = _geometry(size)(_tv_boxes(boxes, height, width)).as_subclass(Tensor)
    return out_boxes, _non_empty(out_boxes)


def _geometry(size: int) -> v2.Compose:
    return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ClampBoundingBoxes()])


def _tv_boxes(boxes: Tensor, height: int, width: int) -> tv_tensors.BoundingBoxes:
    xyxy = boxes.to(torch.float32).reshape(-1, 4)  # (N, 4), also for N = 0
    return tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(height, width))


def _non_empty(boxes: Tensor) -> Tensor:
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def normalize(image: Tensor) -> Tensor:
    """``Tensor[3, H, W]`` uint8 RGB -> ``Tensor[3, H, W]`` float32, ImageNet-normalised."""
    return TF.normalize(TF.to_dtype(image, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD))


def denormalize(image: Tensor) -> Tensor:
    """Undo :func:`normalize` for display.

    Args:
        image: ``Tensor[3, H, W]`` (or ``Tensor[B, 3, H, W]``) ImageNet-normalised.

    Returns:
        Same shape, float values clipped to ``[0, 1]``.

    Raises:
        ValueError: the channel dimension (third from last) is not 3.
    """
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"image: expected Tensor[3, H, W] or Tensor[B, 3, H, W], got shape {tuple(image.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)  # (3,) -> (3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)  # (3,) -> (3, 1, 1)
    return (image * std + mean).clamp(0.0, 1.0)


def pad_gt(boxes: Tensor, labels: Tensor, max_boxes: int) -> Tensor:
    """Stack boxes and labels into the course's fixed-size GT tensor.

    Args:
        boxes: ``Tensor[N, 4]`` XYXY boxes, ``N <= max_boxes``.
        labels: ``Tensor[N]`` class indices.
        max_boxes: rows of the result.

    Returns:
        ``Tensor[max_boxes, 5]`` float32, rows ``(x1, y1, x2, y2, class)``, then rows of -1.
    """
    num = boxes.shape[0]
    if num > max_boxes:
        raise ValueError(f"boxes: {num} boxes do not fit max_boxes={max_boxes}")
    gt = torch.full((max_boxes, 5), PAD_VALUE, dtype=torch.float32)
    gt[:num, :4] = boxes.to(torch.float32)
    gt[:num, 4] = labels.to(torch.float32)
    return gt
