"""COCO-style AP@0.5 (rcnn_kit.engine.coco_ap through mean_average_precision) against pycocotools
called the usual way: ``loadRes`` of an N x 7 array, default area ranges and maxDets, IoU 0.5,
exact k/100 recall thresholds; AP read at area "all", maxDets 100."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from detection_sets import NAMES, image, random_set

from rcnn_kit.engine import ImagePrediction, mean_average_precision

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

EXACT_RECALLS = np.array([k / 100 for k in range(101)])


def pycocotools_ap(images: list[ImagePrediction], num_classes: int) -> tuple[list[float | None], float]:
    """(AP per class or None, matched recall) from a plain COCOeval run."""
    annotations = []
    for i, p in enumerate(images):
        for box, cls, difficult in zip(p.gt_boxes.double().tolist(), p.gt_classes.tolist(), p.gt_difficult.tolist()):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": cls, "iscrowd": int(difficult),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(images))],
                  "categories": [{"id": c} for c in range(num_classes)], "annotations": annotations}
    rows = [[i, x1, y1, x2 - x1, y2 - y1, s, c]
            for i, p in enumerate(images)
            for (x1, y1, x2, y2), s, c in zip(p.boxes.double().tolist(), p.scores.double().tolist(), p.classes.tolist())]
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(np.array(rows, dtype=np.float64))
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.params.recThrs = EXACT_RECALLS
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # (T, R, K, A, M) -> (R, K) at area "all", maxDets 100
    aps = [float(precision[:, k].mean()) if (precision[:, k] > -1).all() else None for k in range(num_classes)]
    matched = positives = 0
    for e in evaluator.evalImgs:
        if e is not None and e["aRng"] == evaluator.params.areaRng[0] and e["maxDet"] == evaluator.params.maxDets[-1]:
            ignore = np.asarray(e["gtIgnore"], dtype=bool)
            matched += int(((np.asarray(e["gtMatches"][0]) > 0) & ~ignore).sum())
            positives += int((~ignore).sum())
    return aps, matched / positives


@pytest.mark.parametrize("grid", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize("seed", range(4))
def test_coco_option_equals_pycocotools_with_exact_thresholds(seed, grid):
    images = random_set(100 + seed, grid=grid)
    result = mean_average_precision(images, NAMES, method="coco")
    expected, recall = pycocotools_ap(images, len(NAMES))
    assert result["metric"] == "COCO-style AP@0.5 (101-point)"
    for name, want in zip(NAMES, expected, strict=True):
        got = result["per_class_ap_50"][name]
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, abs=1e-6), name
    present = [e for e in expected if e is not None]
    assert result["map_50"] == pytest.approx(sum(present) / len(present), abs=1e-6)
    assert result["recall_50"] == pytest.approx(recall, abs=1e-12)


def test_coco_option_with_a_class_without_gt_and_no_detections_at_all():
    result = mean_average_precision([image([], [(0, 0, 10, 10, 0)]), image([], [], index=1)], NAMES, method="coco")
    assert result["per_class_ap_50"] == {"cat": 0.0, "dog": None, "fish": None}
    assert result["map_50"] == 0.0 and result["recall_50"] == 0.0


def test_coco_looks_at_100_detections_per_image_and_class():
    # 100 misses outrank the hit: COCO never sees the hit; VOC, without a cap, does.
    misses = [(50 + k % 10, 50, 60 + k % 10, 60, 0, 0.99 - k * 1e-3) for k in range(100)]
    images = [image([*misses, (0, 0, 10, 10, 0, 0.5)], [(0, 0, 10, 10, 0)])]
    assert mean_average_precision(images, NAMES, method="coco")["map_50"] == 0.0
    assert mean_average_precision(images, NAMES)["map_50"] == pytest.approx(1 / 101, abs=1e-12)
