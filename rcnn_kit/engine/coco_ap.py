"""COCO-style AP at IoU 0.5, computed by pycocotools' ``COCOeval`` in one evaluation pass.

Settings, all through ``COCOeval.params``:

* IoU threshold 0.5 only;
* recall thresholds exactly ``k/100`` for ``k = 0..100`` (torchmetrics' default builds them
  with a float32 ``linspace``, which puts 36 of them above ``k/100`` and can cost up to
  1/101 AP per class);
* one area range, ``all`` (COCO's small/medium/large ranges would be computed and
  thrown away);
* at most :data:`COCO_MAX_DETECTIONS` detections per image *and class* (COCO's ``maxDets``).

Per-class AP is read from the same ``accumulate()`` result (torchmetrics instead re-runs
the evaluation once per class). Difficult GT boxes are passed as COCO crowd regions
(``iscrowd=1``), COCO's own way to leave a box out: detections matched to one are ignored.
COCO matches a crowd region by intersection over the detection's area, and a detection takes
the best GT box *not yet matched*, where VOC takes the best box outright (see
:mod:`rcnn_kit.engine.voc_ap`).

pycocotools is imported when this back-end runs, so the default VOC metric works without it.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from rcnn_kit.engine.detections import DetectionArrays
from rcnn_kit.engine.voc_ap import VOC_IOU_THRESHOLD, ClassAPs

#: COCO's recall thresholds, exactly k/100.
COCO_RECALL_THRESHOLDS = np.array([k / 100 for k in range(101)], dtype=np.float64)
#: Detections per image and class that COCO looks at (its usual last ``maxDets``).
COCO_MAX_DETECTIONS = 100
#: COCO's "all" area range (pixels squared).
COCO_AREA_ALL = (0.0, 1e5**2)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """``ndarray[N, 4]`` XYXY -> ``ndarray[N, 4]`` COCO ``(x, y, width, height)``."""
    out = boxes.copy()
    out[:, 2:] -= boxes[:, :2]
    return out


def _coco(images: list[dict[str, int]], categories: list[dict[str, int]], annotations: list[dict[str, Any]]) -> Any:
    """An in-memory ``pycocotools.coco.COCO`` holding ``annotations`` (its index messages silenced)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _annotations(
    image: np.ndarray, category: np.ndarray, boxes: np.ndarray, extra_key: str, extra: list[Any]
) -> list[dict[str, Any]]:
    """COCO annotation dicts (ids from 1, as pycocotools needs non-zero ids) with one extra field."""
    xywh = _xywh(boxes)
    return [
        {
            "id": k + 1,
            "image_id": img,
            "category_id": cat,
            "bbox": box,
            "area": box[2] * box[3],
            extra_key: value,
        }
        for k, (img, cat, box, value) in enumerate(zip(image.tolist(), category.tolist(), xywh.tolist(), extra))
    ]


def evaluate_coco(arrays: DetectionArrays) -> ClassAPs:
    """COCO-style 101-point AP@0.5 of every class and COCO's one-to-one matched recall.

    Args:
        arrays: the set (see :func:`rcnn_kit.engine.detections.stack_predictions`).

    Returns:
        Per-class AP (None for a class without a non-difficult GT box), GT boxes that
        COCO's matching found (among each image's best :data:`COCO_MAX_DETECTIONS`
        detections per class), and non-difficult GT boxes.
    """
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i} for i in range(arrays.num_images)]
    categories = [{"id": c} for c in range(arrays.num_classes)]
    gt = _coco(images, categories, _annotations(
        arrays.gt_image, arrays.gt_class, arrays.gt_boxes, "iscrowd", arrays.gt_difficult.astype(int).tolist()
    ))
    dt = _coco(images, categories, _annotations(
        arrays.det_image, arrays.det_class, arrays.det_boxes, "score", arrays.det_score.tolist()
    ))
    evaluator = COCOeval(gt, dt, iouType="bbox")
    params = evaluator.params
    params.iouThrs = np.array([VOC_IOU_THRESHOLD])
    params.recThrs = COCO_RECALL_THRESHOLDS
    params.maxDets = [COCO_MAX_DETECTIONS]
    params.areaRng = [list(COCO_AREA_ALL)]
    params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, 0]  # (T=1, R, K, A=1, M=1) -> (R, K); -1: no GT
    aps: list[float | None] = []
    for c in range(arrays.num_classes):
        column = precision[:, c]
        aps.append(float(column.mean()) if (column > -1).all() else None)
    matched = 0
    for image_eval in evaluator.evalImgs:  # one per (class, image) with GT or detections
        if image_eval is not None:
            found = np.asarray(image_eval["gtMatches"][0]) > 0  # (G,) in this entry's GT order
            matched += int((found & ~np.asarray(image_eval["gtIgnore"], dtype=bool)).sum())
    return ClassAPs(ap=aps, true_positives=matched, positives=int((~arrays.gt_difficult).sum()))
