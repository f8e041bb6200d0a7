"""PASCAL VOC average precision at IoU 0.5: the devkit's matching and interpolation, vectorised.

No well-kept library computes VOC AP (torchmetrics and pycocotools compute COCO's), so it
is written here from the definition in the PASCAL VOC devkit (``VOCevaldet.m``, ``VOCap.m``):

* The detections of a class are ranked by score, highest first (ties keep the input
  order, as MATLAB's stable ``sort`` does).
* Each detection goes to the GT box of its class in its image that it overlaps most
  (IoU; on ties the first such box in annotation order), whether or not a higher-ranked
  detection already took that box. With IoU >= 0.5 (the devkit's
  ``ovmax >= VOCopts.minoverlap``; so "exactly 0.5" counts, as in COCO and the course's
  script, while py-faster-rcnn's Python port writes ``ovmax > ovthresh``):
  a difficult box makes the detection ignored (neither TP nor FP); a box no higher-ranked
  detection took makes it a TP; a taken box makes it a FP (duplicate). Below 0.5, or with
  no GT box of its class in the image, it is a FP.
* Difficult boxes are not positives; a class without a non-difficult GT box has no AP.
* All-point AP (VOC2010 and later, the course's metric): the area under the precision
  envelope (precision made non-increasing from the right) over recall. 11-point AP
  (VOC2007): the mean over recall thresholds ``t = k/10`` of the highest precision at
  recall >= t. The thresholds are exact ``k/10`` (py-faster-rcnn's
  ``np.arange(0, 1.1, 0.1)`` puts 0.3, 0.6 and 0.7 one ulp above, which drops a point
  whenever recall equals one of them).

One deliberate difference from the devkit: IoU uses continuous areas
``(x2 - x1) * (y2 - y1)``, as torchvision's ``box_iou`` and pycocotools do, not the
devkit's inclusive-pixel ``+ 1``: the kit's boxes are real-valued coordinates in the
resized crop, not pixel indices.

Why no loop over detections: a VOC detection's box is fixed by IoU alone (COCO instead
takes the best box *still unmatched*), so the greedy matching reduces to (1) the best
same-class GT box of every detection, from one pass over all same-class
(detection, GT) pairs of the set, and (2) "a detection is a TP when it is the first, in
score order, to claim its non-difficult box", a first-occurrence query (``np.unique``).
Only the 20-odd per-class precision/recall curves are computed in a loop over classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcnn_kit.engine.detections import DetectionArrays

#: A detection matches a GT box when their IoU is at least this (PASCAL VOC's criterion).
VOC_IOU_THRESHOLD = 0.5
#: Most (detection, GT) pairs whose IoUs are held at once (about 150 bytes each while matching).
MAX_PAIRS_PER_CHUNK = 2_000_000
#: Recall thresholds of VOC2007's 11-point AP, exactly k/10.
ELEVEN_POINT_RECALLS = np.array([k / 10 for k in range(11)], dtype=np.float64)


@dataclass(frozen=True)
class ClassAPs:
    """What an AP back-end returns for a whole set.

    Attributes:
        ap: AP of each class ``0..C-1``; None for a class without a non-difficult GT box.
        true_positives: GT boxes (not difficult) matched one-to-one by some detection.
        positives: GT boxes that are not difficult.
    """

    ap: list[float | None]
    true_positives: int
    positives: int


@dataclass(frozen=True)
class VocMatches:
    """The outcome of VOC matching for every detection (``ndarray[D]`` each).

    Attributes:
        best_gt: row in the GT arrays of the detection's best-overlapping same-class GT
            box in its image, -1 when its image has no GT box of its class.
        best_iou: that IoU (``-inf`` when there is no such box).
        true_positive: the detection found a non-difficult box first.
        ignored: its best box is difficult and overlaps enough (neither TP nor FP).
    """

    best_gt: np.ndarray
    best_iou: np.ndarray
    true_positive: np.ndarray
    ignored: np.ndarray

    @property
    def false_positive(self) -> np.ndarray:
        """``ndarray[D]`` bool: neither a TP nor ignored."""
        return ~(self.true_positive | self.ignored)


def paired_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of row ``i`` of ``boxes_a`` with row ``i`` of ``boxes_b`` (not all pairs).

    Args:
        boxes_a: ``ndarray[P, 4]`` XYXY boxes.
        boxes_b: ``ndarray[P, 4]`` XYXY boxes.

    Returns:
        ``ndarray[P]`` float64 IoU with continuous areas; 0 where both boxes are empty.
    """
    width = np.clip(np.minimum(boxes_a[:, 2], boxes_b[:, 2]) - np.maximum(boxes_a[:, 0], boxes_b[:, 0]), 0, None)
    height = np.clip(np.minimum(boxes_a[:, 3], boxes_b[:, 3]) - np.maximum(boxes_a[:, 1], boxes_b[:, 1]), 0, None)
    inter = width * height
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _best_of_pairs(
    det_boxes: np.ndarray, pairs_per_det: np.ndarray, first_gt: np.ndarray, gt_by_key: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best GT of each detection of a chunk, from all its (detection, same-class GT) pairs at once.

    Args:
        det_boxes: ``ndarray[D, 4]`` XYXY boxes of the chunk's detections.
        pairs_per_det: ``ndarray[D]`` number of candidate GT boxes of each.
        first_gt: ``ndarray[D]`` position in ``gt_by_key`` of each one's first candidate.
        gt_by_key: ``ndarray[G]`` GT rows grouped by (image, class), annotation order kept.
        gt_boxes: ``ndarray[G, 4]`` XYXY GT boxes.

    Returns:
        ``(best_gt ndarray[D] int64, best_iou ndarray[D] float64)`` as in :func:`best_gt_per_detection`.
    """
    num_dets = det_boxes.shape[0]
    best_gt = np.full(num_dets, -1, dtype=np.int64)
    best_iou = np.full(num_dets, -np.inf)
    num_pairs = int(pairs_per_det.sum())
    if num_pairs == 0:
        return best_gt, best_iou
    pair_det = np.repeat(np.arange(num_dets), pairs_per_det)  # (P,) detection of each pair
    segment_start = np.cumsum(pairs_per_det) - pairs_per_det  # (D,) first pair of each detection
    offset = np.arange(num_pairs) - segment_start[pair_det]  # (P,) 0, 1, ... within a detection's pairs
    pair_gt = gt_by_key[first_gt[pair_det] + offset]  # (P,) GT row of each pair
    iou = paired_iou(det_boxes[pair_det], gt_boxes[pair_gt])  # (P,)
    has_pairs = pairs_per_det > 0
    starts = segment_start[has_pairs]  # increasing: non-empty segments only
    best_iou[has_pairs] = np.maximum.reduceat(iou, starts)  # (D',) best IoU of each detection with candidates
    # First pair reaching the maximum = first GT in annotation order (np.argmax's tie rule).
    candidate = np.where(iou == best_iou[pair_det], np.arange(num_pairs), num_pairs)  # (P,)
    best_gt[has_pairs] = pair_gt[np.minimum.reduceat(candidate, starts)]
    return best_gt, best_iou


def best_gt_per_detection(
    arrays: DetectionArrays, max_pairs: int = MAX_PAIRS_PER_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, its best-overlapping GT box of the same class in the same image.

    Every detection is paired with the same-class GT boxes of its image (found through
    a ``(image, class)`` key over the GT rows sorted stably, so pairs keep annotation
    order); the pair IoUs are computed at once and reduced per detection, in chunks of
    consecutive detections holding at most ``max_pairs`` pairs (bounded memory).

    Args:
        arrays: the set.
        max_pairs: most (detection, GT) pairs per chunk (a detection is never split).

    Returns:
        ``(best_gt ndarray[D] int64, best_iou ndarray[D] float64)``: the GT row (first in
        annotation order among equal IoUs; -1 without candidates) and its IoU (``-inf``).
    """
    num_dets = arrays.det_class.shape[0]
    gt_key = arrays.gt_image * arrays.num_classes + arrays.gt_class  # (G,) one key per (image, class)
    det_key = arrays.det_image * arrays.num_classes + arrays.det_class  # (D,)
    gt_by_key = np.argsort(gt_key, kind="stable")  # GT rows grouped by key, annotation order kept
    key_count = np.bincount(gt_key, minlength=arrays.num_images * arrays.num_classes)  # (num_keys,)
    key_start = np.cumsum(key_count) - key_count  # first position of each key in gt_by_key
    pairs_per_det = key_count[det_key]  # (D,) same-class GT boxes in the detection's image
    pairs_before = np.concatenate(([0], np.cumsum(pairs_per_det)))  # (D + 1,) pairs of detections 0..d-1
    best_gt = np.full(num_dets, -1, dtype=np.int64)
    best_iou = np.full(num_dets, -np.inf)
    lo = 0
    while lo < num_dets:  # one pass unless the set holds more than max_pairs pairs
        hi = max(int(np.searchsorted(pairs_before, pairs_before[lo] + max_pairs, side="right")) - 1, lo + 1)
        best_gt[lo:hi], best_iou[lo:hi] = _best_of_pairs(
            arrays.det_boxes[lo:hi], pairs_per_det[lo:hi], key_start[det_key[lo:hi]], gt_by_key, arrays.gt_boxes
        )
        lo = hi
    return best_gt, best_iou


def score_order(scores: np.ndarray) -> np.ndarray:
    """``ndarray[D]`` indices ranking detections by score, highest first; ties keep input order."""
    return np.argsort(-scores, kind="stable")


def match_detections(arrays: DetectionArrays, iou_threshold: float = VOC_IOU_THRESHOLD) -> VocMatches:
    """VOC's greedy matching of every detection (see the module docstring).

    Args:
        arrays: the set.
        iou_threshold: a detection overlapping its best box by at least this is a hit.

    Returns:
        The matches; each detection is exactly one of TP, FP, ignored.
    """
    best_gt, best_iou = best_gt_per_detection(arrays)
    hit = best_iou >= iou_threshold  # -inf (no candidate box) is never a hit
    ignored = np.zeros_like(hit)
    ignored[hit] = arrays.gt_difficult[best_gt[hit]]
    claims = hit & ~ignored
    ranked_claims = score_order(arrays.det_score)
    ranked_claims = ranked_claims[claims[ranked_claims]]  # claiming detections, best score first
    _, first = np.unique(best_gt[ranked_claims], return_index=True)  # first claim of each GT box
    true_positive = np.zeros_like(hit)
    true_positive[ranked_claims[first]] = True
    return VocMatches(best_gt=best_gt, best_iou=best_iou, true_positive=true_positive, ignored=ignored)


def average_precision(recall: np.ndarray, precision: np.ndarray, *, eleven_point: bool = False) -> float:
    """AP of one class from its precision/recall points, ranked by score.

    Args:
        recall: ``ndarray[K]`` non-decreasing recall after each counted detection.
        precision: ``ndarray[K]`` precision after each counted detection.
        eleven_point: VOC2007's 11-point AP instead of the all-point area.

    Returns:
        AP in ``[0, 1]``; 0 when ``K == 0``.
    """
    if eleven_point:
        if recall.shape[0] == 0:
            return 0.0
        best_from = np.maximum.accumulate(precision[::-1])[::-1]  # (K,) max precision from point i on
        first = np.searchsorted(recall, ELEVEN_POINT_RECALLS, side="left")  # (11,) first point with recall >= t
        reached = first < recall.shape[0]
        return float(np.where(reached, best_from[np.minimum(first, recall.shape[0] - 1)], 0.0).sum() / 11)
    mrec = np.concatenate(([0.0], recall, [1.0]))  # (K + 2,)
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, non-increasing
    step = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall moves
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def evaluate_voc(
    arrays: DetectionArrays, *, eleven_point: bool = False, iou_threshold: float = VOC_IOU_THRESHOLD
) -> ClassAPs:
    """VOC AP of every class and the one-to-one matched recall.

    Args:
        arrays: the set (see :func:`rcnn_kit.engine.detections.stack_predictions`).
        eleven_point: VOC2007's 11-point AP instead of all-point (VOC2010+).
        iou_threshold: the matching IoU.

    Returns:
        Per-class AP (None without non-difficult GT), matched and total positives.
    """
    matches = match_detections(arrays, iou_threshold)
    positives = np.bincount(arrays.gt_class[~arrays.gt_difficult], minlength=arrays.num_classes)  # (C,)
    ranked = score_order(arrays.det_score)
    ranked = ranked[~matches.ignored[ranked]]  # ignored detections change neither precision nor recall
    ranked = ranked[np.argsort(arrays.det_class[ranked], kind="stable")]  # grouped by class, by score within
    per_class_count = np.bincount(arrays.det_class[ranked], minlength=arrays.num_classes)  # (C,)
    bounds = np.concatenate(([0], np.cumsum(per_class_count)))  # (C + 1,)
    tp_ranked = matches.true_positive[ranked].astype(np.float64)
    aps: list[float | None] = []
    for c in range(arrays.num_classes):
        if positives[c] == 0:
            aps.append(None)
            continue
        tp = np.cumsum(tp_ranked[bounds[c] : bounds[c + 1]])  # (K,) TPs among the top k
        counted = np.arange(1, tp.shape[0] + 1, dtype=np.float64)  # TP + FP among the top k
        aps.append(average_precision(tp / positives[c], tp / counted, eleven_point=eleven_point))
    return ClassAPs(ap=aps, true_positives=int(matches.true_positive.sum()), positives=int(positives.sum()))
