"""Small detection sets for the AP tests: hand-written images and seeded random crowded sets."""

from __future__ import annotations

import numpy as np
import torch

from rcnn_kit.engine import ImagePrediction

NAMES = ("cat", "dog", "fish")


def image(dets=(), gts=(), index=0) -> ImagePrediction:
    """dets: ``(x1, y1, x2, y2, class, score)``; gts: ``(x1, y1, x2, y2, class[, difficult])``."""
    dets, gts = list(dets), list(gts)
    return ImagePrediction(
        index=index,
        boxes=torch.tensor([d[:4] for d in dets], dtype=torch.float32).reshape(-1, 4),
        classes=torch.tensor([d[4] for d in dets], dtype=torch.int64),
        scores=torch.tensor([d[5] for d in dets], dtype=torch.float32),
        gt_boxes=torch.tensor([g[:4] for g in gts], dtype=torch.float32).reshape(-1, 4),
        gt_classes=torch.tensor([g[4] for g in gts], dtype=torch.int64),
        gt_difficult=torch.tensor([bool(g[5]) if len(g) > 5 else False for g in gts], dtype=torch.bool),
    )


def random_set(seed: int, num_images: int = 25, num_classes: int = 3, grid: bool = False) -> list[ImagePrediction]:
    """Crowded random images: GT boxes (20% difficult), jittered and duplicated detections, misses.

    ``grid``: integer coordinates and scores in tenths, so that IoU and score ties occur.
    """
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        m = int(rng.integers(0, 7))
        xy = rng.uniform(0, 60, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 40, (m, 2))], axis=1)  # (M, 4) XYXY
        if grid:
            gt = np.round(gt / 4) * 4
        gt_cls = rng.integers(0, num_classes, m)
        n_true = int(rng.integers(0, 2 * m + 1))
        src = rng.integers(0, max(m, 1), n_true)
        jitter = rng.normal(0, 3, (n_true, 4))
        near = gt[src] + (np.round(jitter) if grid else jitter) if m else np.zeros((0, 4))
        n_rand = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (n_rand, 2))
        far = np.concatenate([xy, xy + rng.uniform(5, 40, (n_rand, 2))], axis=1)
        boxes = np.concatenate([near, far])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        det_cls = np.concatenate([gt_cls[src] if m else np.zeros(0, int), rng.integers(0, num_classes, n_rand)])
        det_cls = np.where(rng.uniform(size=det_cls.shape[0]) < 0.1, rng.integers(0, num_classes, det_cls.shape[0]),
                           det_cls)  # some class confusions
        scores = np.round(rng.uniform(0.05, 1, boxes.shape[0]), 1) if grid else rng.uniform(0.05, 1, boxes.shape[0])
        images.append(ImagePrediction(
            index=i,
            boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            classes=torch.tensor(det_cls, dtype=torch.int64),
            scores=torch.tensor(scores, dtype=torch.float32),
            gt_boxes=torch.tensor(gt, dtype=torch.float32).reshape(-1, 4),
            gt_classes=torch.tensor(gt_cls, dtype=torch.int64),
            gt_difficult=torch.tensor(rng.uniform(size=m) < 0.2, dtype=torch.bool),
        ))
    return images
