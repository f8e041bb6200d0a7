"""Detections and ground truth of a whole evaluation set, per image and flattened.

* :class:`ImagePrediction` holds one image's detections and its ground truth
  (difficult boxes included, flagged), as :func:`rcnn_kit.engine.predict` returns them.
* :class:`DetectionArrays` is the same data flattened into float64/int64 numpy arrays,
  the one input of both AP back-ends (:mod:`rcnn_kit.engine.voc_ap`,
  :mod:`rcnn_kit.engine.coco_ap`); :func:`stack_predictions` builds it and checks
  shapes and class indices once.

Boxes are XYXY pixels everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


@dataclass
class ImagePrediction:
    """Detections and ground truth of one image (all tensors on the CPU).

    Attributes:
        index: position of the image in the dataset.
        boxes: ``Tensor[N, 4]`` float32 XYXY predicted boxes.
        classes: ``Tensor[N]`` int64 predicted class indices in ``0..C-1``.
        scores: ``Tensor[N]`` float32 confidence scores.
        gt_boxes: ``Tensor[M, 4]`` float32 XYXY ground-truth boxes (padding removed).
        gt_classes: ``Tensor[M]`` int64 ground-truth class indices.
        gt_difficult: ``Tensor[M]`` bool, True for PASCAL VOC "difficult" boxes (neither
            found nor missed by the evaluation); all False when not given.
    """

    index: int
    boxes: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    gt_boxes: torch.Tensor
    gt_classes: torch.Tensor
    gt_difficult: torch.Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        if self.gt_difficult is None:
            self.gt_difficult = torch.zeros(self.gt_classes.shape[0], dtype=torch.bool)


@dataclass(frozen=True)
class DetectionArrays:
    """All detections and GT boxes of an evaluation set, one row per box.

    ``D`` detections and ``G`` GT boxes over ``num_images`` images; images are
    numbered by their position in the input list, and rows keep the input order
    (image by image, then as listed within the image).

    Attributes:
        num_images: images in the set.
        num_classes: classes ``0..C-1``.
        det_image: ``ndarray[D]`` int64 image number of each detection.
        det_class: ``ndarray[D]`` int64 class index.
        det_score: ``ndarray[D]`` float64 confidence.
        det_boxes: ``ndarray[D, 4]`` float64 XYXY boxes.
        gt_image: ``ndarray[G]`` int64 image number of each GT box.
        gt_class: ``ndarray[G]`` int64 class index.
        gt_difficult: ``ndarray[G]`` bool difficult flag.
        gt_boxes: ``ndarray[G, 4]`` float64 XYXY boxes.
    """

    num_images: int
    num_classes: int
    det_image: np.ndarray
    det_class: np.ndarray
    det_score: np.ndarray
    det_boxes: np.ndarray
    gt_image: np.ndarray
    gt_class: np.ndarray
    gt_difficult: np.ndarray
    gt_boxes: np.ndarray


def _check_prediction(p: ImagePrediction, position: int, num_classes: int) -> None:
    """Raise ValueError naming ``predictions[position]`` when shapes or class indices are wrong."""
    where = f"predictions[{position}] (image index {p.index})"
    n, m = p.classes.shape[0], p.gt_classes.shape[0]
    expected = {
        "boxes": ((n, 4), p.boxes),
        "scores": ((n,), p.scores),
        "gt_boxes": ((m, 4), p.gt_boxes),
        "gt_difficult": ((m,), p.gt_difficult),
    }
    if p.classes.dim() != 1 or p.gt_classes.dim() != 1:
        raise ValueError(
            f"{where}: classes and gt_classes must be 1-D, got shapes {tuple(p.classes.shape)} "
            f"and {tuple(p.gt_classes.shape)}"
        )
    for name, (shape, tensor) in expected.items():
        empty_ok = shape[0] == 0 and tensor.numel() == 0  # type: ignore[union-attr]  # e.g. torch.zeros(0) for "no boxes"
        if tuple(tensor.shape) != shape and not empty_ok:  # type: ignore[union-attr]  # set in __post_init__
            raise ValueError(f"{where}.{name}: expected shape {shape}, got {tuple(tensor.shape)}")  # type: ignore[union-attr]
    for name, classes in (("classes", p.classes), ("gt_classes", p.gt_classes)):
        if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(
                f"{where}.{name}: class indices must lie in 0..{num_classes - 1} "
                f"({num_classes} class_names), got {classes.tolist()}"
            )


def _cat(parts: list[torch.Tensor], dtype: torch.dtype, width: int | None = None) -> np.ndarray:
    """Concatenate CPU tensors into one numpy array of ``dtype`` (``(0,)`` or ``(0, width)`` when empty)."""
    if not parts:
        return torch.zeros((0,) if width is None else (0, width), dtype=dtype).numpy()
    return torch.cat([t.detach().cpu().to(dtype) for t in parts]).numpy()


def stack_predictions(predictions: Sequence[ImagePrediction], num_classes: int) -> DetectionArrays:
    """Flatten per-image predictions into :class:`DetectionArrays` after checking them.

    Args:
        predictions: one :class:`ImagePrediction` per image.
        num_classes: number of classes ``C``.

    Returns:
        The flattened arrays (boxes and scores as float64).

    Raises:
        ValueError: a tensor has the wrong shape, a class index lies outside ``0..C-1`` or
            a box or score is NaN or infinite (the message names the image).
    """
    for position, p in enumerate(predictions):
        _check_prediction(p, position, num_classes)
    det_counts = torch.tensor([p.classes.shape[0] for p in predictions], dtype=torch.int64)
    gt_counts = torch.tensor([p.gt_classes.shape[0] for p in predictions], dtype=torch.int64)
    image_ids = torch.arange(len(predictions), dtype=torch.int64)
    arrays = DetectionArrays(
        num_images=len(predictions),
        num_classes=num_classes,
        det_image=torch.repeat_interleave(image_ids, det_counts).numpy(),
        det_class=_cat([p.classes for p in predictions], torch.int64),
        det_score=_cat([p.scores for p in predictions], torch.float64),
        det_boxes=_cat([p.boxes.reshape(-1, 4) for p in predictions], torch.float64, width=4),
        gt_image=torch.repeat_interleave(image_ids, gt_counts).numpy(),
        gt_class=_cat([p.gt_classes for p in predictions], torch.int64),
        gt_difficult=_cat([p.gt_difficult for p in predictions], torch.bool),  # type: ignore[misc]
        gt_boxes=_cat([p.gt_boxes.reshape(-1, 4) for p in predictions], torch.float64, width=4),
    )
    for name, values, image in (
        ("boxes", arrays.det_boxes, arrays.det_image),
        ("scores", arrays.det_score, arrays.det_image),
        ("gt_boxes", arrays.gt_boxes, arrays.gt_image),
    ):
        finite = np.isfinite(values)
        bad = ~(finite.all(axis=1) if values.ndim == 2 else finite)  # (N,) rows with NaN or inf
        if bad.any():
            position = int(image[bad.argmax()])
            raise ValueError(
                f"predictions[{position}].{name}: expected finite values, got NaN or inf "
                f"(image index {predictions[position].index})"
            )
    return arrays
