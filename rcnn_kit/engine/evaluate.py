"""Run a detector over a dataset and score its detections.

* :func:`predict` runs the model in eval mode one image at a time (the course's
  FasterRCNN supports batch size 1 at test time) and keeps the GT beside each result,
  difficult boxes included and flagged when the dataset provides them.
* :func:`mean_average_precision` computes mAP at IoU 0.5 by PASCAL VOC's definition
  (all-point by default, or VOC2007's 11-point; :mod:`rcnn_kit.engine.voc_ap`) or
  COCO-style through pycocotools (:mod:`rcnn_kit.engine.coco_ap`), with the one-to-one
  matched recall; its ``"metric"`` entry names what was computed.
* :func:`format_map_table` prints such summaries side by side under that name.

Boxes are XYXY pixels everywhere.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from rcnn_kit.engine.batching import split_item
from rcnn_kit.engine.detections import ImagePrediction, stack_predictions
from rcnn_kit.engine.utils import resolve_device
from rcnn_kit.engine.voc_ap import VOC_IOU_THRESHOLD, evaluate_voc

#: The honest name of each ``method`` of :func:`mean_average_precision`.
METRIC_NAMES: dict[str, str] = {
    "voc": "VOC mAP@0.5 (all-point)",
    "voc07": "VOC07 mAP@0.5 (11-point)",
    "coco": "COCO-style AP@0.5 (101-point)",
}
#: Row labels of :func:`format_map_table` (the first for summaries without a ``metric``).
UNNAMED_METRIC = "mAP@0.5"
RECALL_LABEL = "matched recall@0.5"
#: Defaults of :func:`predict`: a low score threshold keeps the low-confidence tail mAP needs.
DEFAULT_SCORE_THRESH = 0.05
DEFAULT_NMS_THRESH = 0.5
#: Name of the optional dataset method giving evaluation GT with difficult flags:
#: ``dataset.eval_ground_truth(index) -> (boxes Tensor[M, 4], classes Tensor[M], difficult Tensor[M] bool)``,
#: boxes XYXY in the same pixels as the item's image (see :class:`rcnn_kit.data.datasets.VOCXmlDataset`).
EVAL_GT_METHOD = "eval_ground_truth"


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


def eval_ground_truth(dataset: Dataset, index: int, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The GT of item ``index`` for evaluation: difficult boxes included and flagged when the dataset can.

    Datasets with an ``eval_ground_truth(index)`` method (:data:`EVAL_GT_METHOD`; the kit's
    datasets, also inside ``torch.utils.data.Subset``) give every annotated box with its
    difficult flag; for others the item's padded training GT is used, nothing difficult.

    Args:
        dataset: the dataset ``predict`` runs over.
        index: the item's position in ``dataset``.
        gt: the item's ``Tensor[40, 5]`` training GT (fallback).

    Returns:
        ``(boxes Tensor[M, 4] float32 XYXY, classes Tensor[M] int64, difficult Tensor[M] bool)``.
    """
    while isinstance(dataset, Subset):  # Subset(Subset(ds, a), b)[i] is ds[a[b[i]]]
        index = int(dataset.indices[index])
        dataset = dataset.dataset
    method = getattr(dataset, EVAL_GT_METHOD, None)
    if method is None:
        boxes, classes = split_gt(gt)
        return boxes, classes, torch.zeros(classes.shape[0], dtype=torch.bool)
    boxes, classes, difficult = method(index)
    return boxes.float().reshape(-1, 4), classes.long(), difficult.bool()  # (M, 4), also for M == 0


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
            (see :func:`rcnn_kit.engine.batching.split_item`); the GT kept beside the
            detections comes from :func:`eval_ground_truth` (difficult boxes flagged).
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
            gt_boxes, gt_classes, gt_difficult = eval_ground_truth(dataset, index, gt)
            results.append(
                ImagePrediction(
                    index=index,
                    boxes=boxes.detach().float().cpu().reshape(-1, 4),  # (N, 4), also for N == 0
                    classes=classes.detach().long().cpu().reshape(-1),
                    scores=scores.detach().float().cpu().reshape(-1),
                    gt_boxes=gt_boxes.cpu(),
                    gt_classes=gt_classes.cpu(),
                    gt_difficult=gt_difficult.cpu(),
                )
            )
    finally:
        model.train(was_training)
    return results


def mean_average_precision(
    predictions: Sequence[ImagePrediction],
    class_names: Sequence[str],
    *,
    method: Literal["voc", "voc07", "coco"] = "voc",
) -> dict[str, Any]:
    """mAP at IoU 0.5, AP per class and one-to-one matched recall, by the chosen definition.

    ``method``:

    * ``"voc"`` (default, what the course reports): PASCAL VOC all-point AP (VOC2010+),
      VOC matching, difficult boxes ignored (:mod:`rcnn_kit.engine.voc_ap`);
    * ``"voc07"``: the same with VOC2007's 11-point interpolation;
    * ``"coco"``: COCO-style 101-point AP@0.5 by pycocotools, COCO matching, at most
      100 detections per image and class, difficult boxes as crowd regions
      (:mod:`rcnn_kit.engine.coco_ap`).

    Classes without a non-difficult GT box have no AP (``None``) and are left out of the mean.

    Args:
        predictions: output of :func:`predict` (or hand-made :class:`ImagePrediction`).
        class_names: names of classes ``0..C-1``.
        method: ``"voc"``, ``"voc07"`` or ``"coco"``.

    Returns:
        ``{"metric": str, "map_50": float, "per_class_ap_50": {name: float | None},
        "recall_50": float | None, "num_images": int, "num_gt": int, "num_difficult": int,
        "num_detections": int}``. ``metric`` names what was computed (e.g.
        ``"VOC mAP@0.5 (all-point)"``); ``recall_50`` is the share of non-difficult GT
        boxes matched one-to-one by the method's matching at IoU 0.5, whatever the score;
        ``num_gt`` counts every GT box, ``num_difficult`` of them difficult. ``map_50`` is
        NaN and ``recall_50`` None when there is no non-difficult GT box.

    Raises:
        ValueError: unknown ``method``, a tensor of the wrong shape, a class index outside
            ``0..len(class_names)-1`` or a non-finite box or score.
    """
    if method not in METRIC_NAMES:
        raise ValueError(f"method: expected one of {sorted(METRIC_NAMES)}, got {method!r}")
    arrays = stack_predictions(predictions, len(class_names))
    num_difficult = int(arrays.gt_difficult.sum())
    summary: dict[str, Any] = {
        "metric": METRIC_NAMES[method],
        "map_50": math.nan,
        "per_class_ap_50": dict.fromkeys(class_names),
        "recall_50": None,
        "num_images": arrays.num_images,
        "num_gt": int(arrays.gt_class.shape[0]),
        "num_difficult": num_difficult,
        "num_detections": int(arrays.det_class.shape[0]),
    }
    if summary["num_gt"] == num_difficult:
        return summary
    if method == "coco":
        from rcnn_kit.engine.coco_ap import evaluate_coco

        result = evaluate_coco(arrays)
    else:
        result = evaluate_voc(arrays, eleven_point=method == "voc07")
    present = [ap for ap in result.ap if ap is not None]
    summary["map_50"] = sum(present) / len(present)
    summary["per_class_ap_50"] = dict(zip(class_names, result.ap, strict=True))
    summary["recall_50"] = result.true_positives / result.positives
    return summary


def coverage_recall(predictions: Sequence[ImagePrediction], iou: float = VOC_IOU_THRESHOLD) -> float:
    """Share of GT boxes that at least one detection of the same class overlaps with IoU >= ``iou``.

    Coverage, not one-to-one matching (that is ``mean_average_precision(...)["recall_50"]``):
    one detection may cover several GT boxes, whatever the scores. It answers "do the
    proposals reach each object at all", the usual measure of region proposals.

    Args:
        predictions: output of :func:`predict` (or proposals wrapped as :class:`ImagePrediction`).
        iou: IoU threshold in ``(0, 1]``.

    Returns:
        Coverage in ``[0, 1]``.

    Raises:
        ValueError: ``iou`` is out of range, or there is no GT box at all.
    """
    from torchvision.ops import box_iou  # the independent IoU, not the student's

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
        raise ValueError("predictions: coverage is undefined without any ground-truth box")
    return found / total


def format_map_table(results: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """A text table of AP@0.5 per class (rows) and split (columns), then mAP and matched recall.

    The first line and the mAP row carry the summaries' ``metric`` name (e.g.
    ``"VOC mAP@0.5 (all-point)"``); splits scored by different methods are named one by one.

    Args:
        results: split name (``"train"``, ``"val"``) -> a summary of
            :func:`mean_average_precision` (``metric`` and ``recall_50`` optional).
        class_names: names of classes ``0..C-1``, in row order.
    """

    def cell(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    splits = list(results)
    metrics = {s: str(results[s].get("metric", UNNAMED_METRIC)) for s in splits}
    if len(set(metrics.values())) == 1:
        title = map_label = next(iter(metrics.values()))
    else:
        title, map_label = "; ".join(f"{s}: {m}" for s, m in metrics.items()), UNNAMED_METRIC
    width = max(len(RECALL_LABEL), len(map_label), *(len(n) for n in class_names)) + 2
    lines = [title, "".join([f"{'class':<{width}}", *(f"{s:>12}" for s in splits)])]
    for name in class_names:
        lines.append("".join([f"{name:<{width}}", *(f"{cell(results[s]['per_class_ap_50'][name]):>12}" for s in splits)]))
    lines.append("".join([f"{map_label:<{width}}", *(f"{cell(results[s]['map_50']):>12}" for s in splits)]))
    lines.append("".join([f"{RECALL_LABEL:<{width}}", *(f"{cell(results[s].get('recall_50')):>12}" for s in splits)]))
    return "\n".join(lines)
