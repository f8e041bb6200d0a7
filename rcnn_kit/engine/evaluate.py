"""Run a detector over a dataset and score its detections.

* :func:`predict` runs the model in eval mode one image at a time (the course's
  FasterRCNN supports batch size 1 at test time) and keeps the GT beside each result.
* :func:`mean_average_precision` is PASCAL-style mAP at IoU 0.5, computed by
  torchmetrics' :class:`~torchmetrics.detection.MeanAveragePrecision`, which in turn
  runs the COCO evaluation code of **pycocotools** (pass ``backend="faster_coco_eval"``
  to use that package instead). One of the two must be installed.
* :func:`recall_at_iou` is the share of GT boxes that some same-class detection
  overlaps by at least the IoU threshold (torchvision's ``box_iou``).

Boxes are XYXY pixels everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from rcnn_kit.engine.batching import split_item
from rcnn_kit.engine.utils import resolve_device

#: IoU at which a detection counts as correct (PASCAL VOC's criterion).
MAP_IOU_THRESHOLD = 0.5
#: Most detections per image that the COCO evaluation looks at (its usual last maxDets).
MAX_DETECTIONS_PER_IMAGE = 100
#: Defaults of :func:`predict`: a low score threshold keeps the low-confidence tail mAP needs.
DEFAULT_SCORE_THRESH = 0.05
DEFAULT_NMS_THRESH = 0.5


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
    """

    index: int
    boxes: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    gt_boxes: torch.Tensor
    gt_classes: torch.Tensor


def split_gt(gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding rows from a GT tensor.

    Args:
        gt: ``Tensor[40, 5]`` rows ``(x1, y1, x2, y2, class)``; padding rows are all -1.

    Returns:
        ``(boxes Tensor[M, 4] float32, classes Tensor[M] int64)`` of the real rows.
    """
    if gt.dim() != 2 or gt.shape[1] != 5:
        raise ValueError(f"gt: expected Tensor[N, 5] rows (x1, y1, x2, y2, class), got shape {tuple(gt.shape)}")
    real = gt[:, 4] >= 0  # padding rows have class -1
    return gt[real, :4].float(), gt[real, 4].long()


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    score_thresh: float = DEFAULT_SCORE_THRESH,
    nms_thresh: float = DEFAULT_NMS_THRESH,
    device: str | torch.device = "auto",
    limit: int | None = None,
) -> list[ImagePrediction]:
    """Detect objects in each image of ``dataset`` (batch size 1, eval mode).

    Args:
        model: course detector; in eval mode
            ``model(images Tensor[1, 3, H, W], test_score_thresh=..., test_nms_thresh=...)``
            returns ``(boxes Tensor[N, 4], classes Tensor[N], scores Tensor[N])``.
            Its train/eval mode is restored afterwards.
        dataset: items holding ``image Tensor[3, H, W]`` and ``gt_boxes Tensor[40, 5]``
            (see :func:`rcnn_kit.engine.batching.split_item`).
        score_thresh: detections scoring below this are dropped by the model.
        nms_thresh: IoU threshold of the model's class-specific NMS.
        device: where to run (``"auto"``, ``"cpu"``, ``"cuda"``).
        limit: only the first ``limit`` images (all when None).

    Returns:
        One :class:`ImagePrediction` per image, in dataset order.
    """
    if not 0 <= score_thresh <= 1:
        raise ValueError(f"score_thresh: expected a value in [0, 1], got {score_thresh!r}")
    if not 0 < nms_thresh <= 1:
        raise ValueError(f"nms_thresh: expected a value in (0, 1], got {nms_thresh!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit: expected a non-negative int or None, got {limit!r}")
    torch_device = resolve_device(device)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    was_training = model.training
    model.to(torch_device).eval()
    results = []
    try:
        for index in range(count):
            image, gt = split_item(dataset[index])
            boxes, classes, scores = model(
                image.unsqueeze(0).to(torch_device),  # (3, H, W) -> (1, 3, H, W)
                test_score_thresh=score_thresh,
                test_nms_thresh=nms_thresh,
            )
            gt_boxes, gt_classes = split_gt(gt)
            results.append(
                ImagePrediction(
                    index=index,
                    boxes=boxes.detach().float().cpu().reshape(-1, 4),  # (N, 4), also for N == 0
                    classes=classes.detach().long().cpu().reshape(-1),
                    scores=scores.detach().float().cpu().reshape(-1),
                    gt_boxes=gt_boxes.cpu(),
                    gt_classes=gt_classes.cpu(),
                )
            )
    finally:
        model.train(was_training)
    return results


def mean_average_precision(
    predictions: Sequence[ImagePrediction],
    class_names: Sequence[str],
    *,
    backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
) -> dict[str, object]:
    """PASCAL-style mAP@0.5 and per-class AP@0.5 (torchmetrics + pycocotools).

    AP is the area under the COCO 101-point interpolated precision/recall curve at
    IoU 0.5, using at most :data:`MAX_DETECTIONS_PER_IMAGE` detections per image.
    Classes without any GT box have no AP (``None``) and are left out of the mean.

    Args:
        predictions: output of :func:`predict` (or hand-made :class:`ImagePrediction`).
        class_names: names of classes ``0..C-1``.
        backend: COCO evaluation package used by torchmetrics.

    Returns:
        ``{"map_50": float, "per_class_ap_50": {name: float | None}, "num_images": int,
        "num_gt": int, "num_detections": int}``; ``map_50`` is NaN when there is no GT box.

    Raises:
        ValueError: a class index is outside ``0..len(class_names)-1``.
    """
    from torchmetrics.detection import MeanAveragePrecision

    num_classes = len(class_names)
    preds, targets = [], []
    for p in predictions:
        for what, classes in (("classes", p.classes), ("gt_classes", p.gt_classes)):
            if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
                raise ValueError(
                    f"predictions[{p.index}].{what}: class indices must lie in 0..{num_classes - 1} "
                    f"({num_classes} class_names), got {classes.tolist()}"
                )
        preds.append({"boxes": p.boxes.float(), "scores": p.scores.float(), "labels": p.classes.long()})
        targets.append({"boxes": p.gt_boxes.float(), "labels": p.gt_classes.long()})
    num_gt = sum(int(t["labels"].numel()) for t in targets)
    summary: dict[str, object] = {
        "map_50": math.nan,
        "per_class_ap_50": {name: None for name in class_names},
        "num_images": len(preds),
        "num_gt": num_gt,
        "num_detections": sum(int(p["labels"].numel()) for p in preds),
    }
    if num_gt == 0:
        return summary
    metric = MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        iou_thresholds=[MAP_IOU_THRESHOLD],
        max_detection_thresholds=[1, 10, MAX_DETECTIONS_PER_IMAGE],
        class_metrics=True,
        backend=backend,
    )
    metric.update(preds, targets)
    scores = metric.compute()
    summary["map_50"] = float(scores["map"])
    per_class = dict.fromkeys(class_names)
    # torchmetrics lists the classes seen in preds or targets; AP is -1 for those without GT.
    for class_id, ap in zip(scores["classes"].reshape(-1).tolist(), scores["map_per_class"].reshape(-1).tolist()):
        per_class[class_names[class_id]] = ap if ap >= 0 else None
    summary["per_class_ap_50"] = per_class
    return summary


def recall_at_iou(predictions: Sequence[ImagePrediction], iou: float = MAP_IOU_THRESHOLD) -> float:
    """Share of GT boxes overlapped (IoU >= ``iou``) by at least one detection of the same class.

    Not a one-to-one matching: one detection may cover several GT boxes. It answers
    "did the detector find each object at all", whatever the scores.

    Args:
        predictions: output of :func:`predict`.
        iou: IoU threshold in ``(0, 1]``.

    Returns:
        Recall in ``[0, 1]``.

    Raises:
        ValueError: ``iou`` is out of range, or there is no GT box at all.
    """
    if not 0 < iou <= 1:
        raise ValueError(f"iou: expected a value in (0, 1], got {iou!r}")
    found = total = 0
    for p in predictions:
        total += p.gt_boxes.shape[0]
        if p.gt_boxes.shape[0] == 0 or p.boxes.shape[0] == 0:
            continue
        overlaps = box_iou(p.gt_boxes.float(), p.boxes.float())  # (M, N)
        same_class = p.gt_classes.view(-1, 1) == p.classes.view(1, -1)  # (M, 1) == (1, N) -> (M, N)
        found += int(((overlaps >= iou) & same_class).any(dim=1).sum())
    if total == 0:
        raise ValueError("predictions: recall is undefined without any ground-truth box")
    return found / total


def format_map_table(results: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """A text table of AP@0.5 per class (rows) and split (columns), then mAP and recall.

    Args:
        results: split name (``"train"``, ``"val"``) -> a summary of
            :func:`mean_average_precision` (``recall_50`` optional).
        class_names: names of classes ``0..C-1``, in row order.
    """

    def cell(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    splits = list(results)
    width = max(len("recall@0.5"), *(len(n) for n in class_names)) + 2
    lines = ["".join([f"{'class':<{width}}", *(f"{s:>12}" for s in splits)])]
    for name in class_names:
        lines.append("".join([f"{name:<{width}}", *(f"{cell(results[s]['per_class_ap_50'][name]):>12}" for s in splits)]))
    lines.append("".join([f"{'mAP@0.5':<{width}}", *(f"{cell(results[s]['map_50']):>12}" for s in splits)]))
    lines.append("".join([f"{'recall@0.5':<{width}}", *(f"{cell(results[s].get('recall_50')):>12}" for s in splits)]))
    return "\n".join(lines)
