"""Time the kit's mAP (VOC, VOC07, COCO option) against pycocotools on one large synthetic set.

The set (seeded): ``--images`` images (default 5000), ``--classes`` classes (20), exactly
``--dets`` detections per image (100; 500k in all): 1-10 GT boxes per image (10% difficult),
detections that are jittered copies of GT boxes (some duplicated, some with the wrong
class) and random boxes of random classes, uniform scores.

Timed in one run, each as CPU time of this process (``time.process_time``, all threads)
and wall time:

* ``kit voc`` / ``kit voc07`` / ``kit coco``: ``rcnn_kit.engine.mean_average_precision``
  from the list of ``ImagePrediction`` (flattening included);
* ``pycocotools``: ``COCOeval`` as usually called (index the GT, ``loadRes`` of an N x 7
  array, IoU 0.5, exact k/100 recall thresholds, the default four area ranges and maxDets
  1/10/100, ``evaluate`` + ``accumulate``), GT annotation dicts prepared beforehand;
* ``pycocotools, 'all' only``: the same with one area range and maxDets 100 only;
* ``torchmetrics`` (with ``--torchmetrics``): the kit's former path,
  ``MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)``.

The table also gives each mAP, so the kit's COCO option can be compared with pycocotools'.

Example::

    python benchmarks/map_speed.py                       # 5000 x 20 x 100
    python benchmarks/map_speed.py --images 500 --torchmetrics
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout without installing
from rcnn_kit.engine import ImagePrediction, mean_average_precision  # noqa: E402

#: Share of GT boxes flagged difficult, of detections copied from a GT box, and of those given a wrong class.
DIFFICULT_SHARE = 0.1
NEAR_GT_SHARE = 0.3
WRONG_CLASS_SHARE = 0.1
#: Image side in pixels, GT boxes per image, box sides.
IMAGE_SIDE = 500.0
MAX_GT_PER_IMAGE = 10
MIN_SIDE, MAX_SIDE = 20.0, 200.0
#: Standard deviation of the jitter on copied boxes, in pixels.
JITTER_PX = 8.0
EXACT_RECALLS = np.array([k / 100 for k in range(101)])


def make_set(num_images: int, num_classes: int, dets_per_image: int, seed: int) -> list[ImagePrediction]:
    """The seeded synthetic set described in the module docstring."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        m = int(rng.integers(1, MAX_GT_PER_IMAGE + 1))
        xy = rng.uniform(0, IMAGE_SIDE - MAX_SIDE, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(MIN_SIDE, MAX_SIDE, (m, 2))], axis=1)  # (M, 4) XYXY
        gt_cls = rng.integers(0, num_classes, m)
        n_near = int(dets_per_image * NEAR_GT_SHARE)
        src = rng.integers(0, m, n_near)
        near = gt[src] + rng.normal(0, JITTER_PX, (n_near, 4))
        near_cls = np.where(rng.uniform(size=n_near) < WRONG_CLASS_SHARE, rng.integers(0, num_classes, n_near), gt_cls[src])
        n_far = dets_per_image - n_near
        xy = rng.uniform(0, IMAGE_SIDE - MAX_SIDE, (n_far, 2))
        far = np.concatenate([xy, xy + rng.uniform(MIN_SIDE, MAX_SIDE, (n_far, 2))], axis=1)
        boxes = np.concatenate([near, far])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        images.append(ImagePrediction(
            index=i,
            boxes=torch.tensor(boxes, dtype=torch.float32),
            classes=torch.tensor(np.concatenate([near_cls, rng.integers(0, num_classes, n_far)]), dtype=torch.int64),
            scores=torch.tensor(rng.uniform(0, 1, dets_per_image), dtype=torch.float32),
            gt_boxes=torch.tensor(gt, dtype=torch.float32),
            gt_classes=torch.tensor(gt_cls, dtype=torch.int64),
            gt_difficult=torch.tensor(rng.uniform(size=m) < DIFFICULT_SHARE),
        ))
    return images


def coco_inputs(images: list[ImagePrediction], num_classes: int) -> tuple[dict[str, Any], np.ndarray]:
    """(GT dataset dict with difficult boxes as crowd, N x 7 detection array) for pycocotools."""
    annotations = []
    for i, p in enumerate(images):
        for (x1, y1, x2, y2), c, d in zip(p.gt_boxes.double().tolist(), p.gt_classes.tolist(), p.gt_difficult.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": c, "iscrowd": int(d),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    dataset = {"images": [{"id": i} for i in range(len(images))],
               "categories": [{"id": c} for c in range(num_classes)], "annotations": annotations}
    rows = []
    for i, p in enumerate(images):
        b = p.boxes.double()
        rows.append(torch.cat([torch.full((b.shape[0], 1), float(i), dtype=torch.float64), b[:, :2], b[:, 2:] - b[:, :2],
                               p.scores.double()[:, None], p.classes.double()[:, None]], dim=1))  # (N, 7)
    return dataset, torch.cat(rows).numpy()


def pycocotools_map(dataset: dict[str, Any], detections: np.ndarray, all_only: bool) -> float:
    """mAP@0.5 by COCOeval, with the default area ranges / maxDets or 'all' / 100 only."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.params.recThrs = EXACT_RECALLS
        if all_only:
            evaluator.params.areaRng, evaluator.params.areaRngLbl, evaluator.params.maxDets = [[0, 1e10]], ["all"], [100]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # (T, R, K, A, M) -> (R, K) at area 'all', maxDets 100
    present = precision[:, (precision > -1).all(axis=0)]
    return float(present.mean())


def torchmetrics_map(images: list[ImagePrediction]) -> float:
    """The kit's former path: torchmetrics' MeanAveragePrecision with per-class metrics."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)
    metric.update([{"boxes": p.boxes, "scores": p.scores, "labels": p.classes} for p in images],
                  [{"boxes": p.gt_boxes, "labels": p.gt_classes, "iscrowd": p.gt_difficult.long()} for p in images])
    return float(metric.compute()["map"])


def timed(fn: Callable[[], float]) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, result) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torchmetrics", action="store_true", help="also time the former torchmetrics path (slow)")
    args = parser.parse_args(argv)
    names = [f"class{c}" for c in range(args.classes)]
    images = make_set(args.images, args.classes, args.dets, args.seed)
    dataset, detections = coco_inputs(images, args.classes)
    runs: list[tuple[str, Callable[[], float]]] = [
        ("kit voc (all-point)", lambda: mean_average_precision(images, names, method="voc")["map_50"]),
        ("kit voc07 (11-point)", lambda: mean_average_precision(images, names, method="voc07")["map_50"]),
        ("kit coco (pycocotools, one pass)", lambda: mean_average_precision(images, names, method="coco")["map_50"]),
        ("pycocotools (4 area ranges, maxDets 1/10/100)", lambda: pycocotools_map(dataset, detections, all_only=False)),
        ("pycocotools ('all' only, maxDets 100)", lambda: pycocotools_map(dataset, detections, all_only=True)),
    ]
    if args.torchmetrics:
        runs.append(("torchmetrics (former kit path)", lambda: torchmetrics_map(images)))
    print(f"# {args.images} images x {args.classes} classes x {args.dets} detections per image "
          f"= {len(detections)} detections, {len(dataset['annotations'])} GT boxes; "
          f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"{platform.machine()}, torch threads {torch.get_num_threads()}")
    rows = {}
    print("| what | CPU s | wall s | mAP@0.5 |\n| --- | --- | --- | --- |")
    for label, fn in runs:
        rows[label] = timed(fn)
        cpu, wall, value = rows[label]
        print(f"| {label} | {cpu:.2f} | {wall:.2f} | {value:.6f} |", flush=True)
    for reference in ("pycocotools (4 area ranges, maxDets 1/10/100)", "pycocotools ('all' only, maxDets 100)"):
        for label in ("kit voc (all-point)", "kit coco (pycocotools, one pass)"):
            print(f"# CPU time ratio {label} / {reference}: {rows[label][0] / rows[reference][0]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
