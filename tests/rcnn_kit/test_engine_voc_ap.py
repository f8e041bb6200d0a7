"""VOC AP (rcnn_kit.engine.voc_ap through mean_average_precision) against hand-computed cases
and against a slow devkit-style transliteration written here.

The oracle follows the PASCAL VOC devkit's voc_eval / voc_ap logic loop by loop: per class,
detections ranked by score (stable), each compared with every same-class GT box of its image,
``ov > ovmax`` keeps the first best box, ``ovmax >= 0.5`` is a hit (the MATLAB devkit's test),
difficult hits are neither TP nor FP (their zero rows are kept in the curve, as in the
devkit), precision ``tp / max(tp + fp, eps)``, then the all-point or 11-point AP. Its two
documented departures from the devkit are the kit's: continuous IoU (no ``+ 1``) and exact
``k/10`` thresholds.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from detection_sets import NAMES, image, random_set

from rcnn_kit.engine import ImagePrediction, mean_average_precision
from rcnn_kit.engine.detections import stack_predictions
from rcnn_kit.engine.voc_ap import average_precision, best_gt_per_detection, match_detections

VOC, VOC07, COCO = "voc", "voc07", "coco"


def ap(images, method=VOC, names=NAMES) -> dict:
    return mean_average_precision(images, names, method=method)


# ---------------------------------------------------------------- hand-computed cases


def test_duplicate_detection_is_a_false_positive_all_point_and_11_point():
    # Two cats; ranks: TP (A), duplicate on A (FP), TP (B): recall .5 .5 1, precision 1 .5 2/3.
    gts = [(0, 0, 10, 10, 0), (50, 50, 60, 60, 0)]
    dets = [(0, 0, 10, 10, 0, 0.9), (0, 0, 10, 10, 0, 0.8), (50, 50, 60, 60, 0, 0.7)]
    # All-point: 0.5 * 1 + 0.5 * 2/3. 11-point: t = 0 .. 0.5 give 1, t = 0.6 .. 1 give 2/3.
    assert ap([image(dets, gts)])["per_class_ap_50"]["cat"] == pytest.approx(5 / 6, abs=1e-12)
    assert ap([image(dets, gts)], VOC07)["per_class_ap_50"]["cat"] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert ap([image(dets, gts)])["recall_50"] == 1.0


def test_detection_on_a_difficult_box_is_neither_true_nor_false_positive():
    # Cat A (normal) and D (difficult); ranks: on D, a miss, on A.
    dets = [(20, 20, 40, 40, 0, 0.95), (70, 70, 90, 90, 0, 0.9), (0, 0, 10, 10, 0, 0.8)]
    difficult = image(dets, [(0, 0, 10, 10, 0), (20, 20, 40, 40, 0, True)])
    # VOC: ignored, FP, TP -> one point (recall 1, precision 1/2).
    result = ap([difficult])
    assert result["per_class_ap_50"]["cat"] == pytest.approx(0.5, abs=1e-12)
    assert (result["num_gt"], result["num_difficult"], result["recall_50"]) == (2, 1, 1.0)
    # The same box counted as a normal one: TP, FP, TP -> 0.5 * 1 + 0.5 * 2/3.
    normal = image(dets, [(0, 0, 10, 10, 0), (20, 20, 40, 40, 0)])
    assert ap([normal])["per_class_ap_50"]["cat"] == pytest.approx(5 / 6, abs=1e-12)
    # The box dropped from the annotations (what the datasets used to do): FP, FP, TP.
    dropped = image(dets, [(0, 0, 10, 10, 0)])
    assert ap([dropped])["per_class_ap_50"]["cat"] == pytest.approx(1 / 3, abs=1e-12)


def test_class_whose_only_boxes_are_difficult_has_no_ap():
    result = ap([image([(0, 0, 10, 10, 1, 0.9)], [(0, 0, 10, 10, 0), (0, 0, 10, 10, 1, True)])])
    assert result["per_class_ap_50"] == {"cat": 0.0, "dog": None, "fish": None}
    assert result["map_50"] == 0.0 and result["recall_50"] == 0.0


def test_only_difficult_boxes_give_nan_and_no_recall():
    result = ap([image([(0, 0, 10, 10, 0, 0.9)], [(0, 0, 10, 10, 0, True)])])
    assert math.isnan(result["map_50"]) and result["recall_50"] is None
    assert (result["num_gt"], result["num_difficult"]) == (1, 1)


def test_crowded_pair_voc_takes_the_best_box_coco_the_best_unmatched_one():
    # G1 and G2 overlap (IoU 2/3). d2 overlaps G1 best (IoU 95/105) and G2 enough (85/115).
    gts = [(0, 0, 10, 10, 0), (2, 0, 12, 10, 0)]
    dets = [(0, 0, 10, 10, 0, 0.9), (0.5, 0, 10.5, 10, 0, 0.8)]
    voc = ap([image(dets, gts)])
    coco = ap([image(dets, gts)], COCO)
    # VOC: d2's best box G1 is taken -> FP: recall .5 .5, precision 1 .5 -> AP 0.5, recall 1/2.
    assert voc["per_class_ap_50"]["cat"] == pytest.approx(0.5, abs=1e-12) and voc["recall_50"] == 0.5
    # COCO: d2 takes G2, still unmatched -> both TP -> AP 1, recall 1.
    assert coco["per_class_ap_50"]["cat"] == pytest.approx(1.0, abs=1e-12) and coco["recall_50"] == 1.0


@pytest.mark.parametrize("method", [VOC, VOC07, COCO])
def test_iou_exactly_half_counts_as_a_match(method):
    # Intersection 50, union 100: IoU is exactly 0.5 in binary floating point. The MATLAB devkit
    # (ovmax >= minoverlap) and COCO count it; py-faster-rcnn's port (ovmax > ovthresh) would not.
    gts = [(0, 0, 10, 10, 0)]
    assert ap([image([(0, 0, 10, 5, 0, 0.9)], gts)], method)["map_50"] == pytest.approx(1.0, abs=1e-12)
    assert ap([image([(0, 0, 20, 10, 0, 0.9)], gts)], method)["map_50"] == pytest.approx(1.0, abs=1e-12)
    assert ap([image([(0, 0, 10, 4.99, 0, 0.9)], gts)], method)["map_50"] == 0.0


def test_image_with_gt_and_no_detection_caps_recall():
    images = [image([(0, 0, 10, 10, 0, 0.9)], [(0, 0, 10, 10, 0)]), image([], [(5, 5, 30, 30, 0)], index=1)]
    assert ap(images)["per_class_ap_50"]["cat"] == pytest.approx(0.5, abs=1e-12)
    assert ap(images, VOC07)["per_class_ap_50"]["cat"] == pytest.approx(6 / 11, abs=1e-12)  # t = 0 .. 0.5
    assert ap(images)["recall_50"] == 0.5


def test_class_without_gt_has_no_ap_and_is_left_out_of_the_mean():
    # A dog detection on the cat's box: wrong class for the cat, and no dog exists anywhere.
    images = [image([(0, 0, 10, 10, 1, 0.9), (0, 0, 10, 10, 0, 0.5)], [(0, 0, 10, 10, 0)])]
    result = ap(images)
    assert result["per_class_ap_50"] == {"cat": 1.0, "dog": None, "fish": None}
    assert result["map_50"] == 1.0 and result["num_detections"] == 2


def test_the_issues_float32_threshold_case_all_three_methods():
    # Five detections of one class, four TPs at 0.9 .. 0.6, one FP; a fifth image's GT has no detection.
    images = [image([(0, 0, 10, 10, 0, 0.9 - 0.1 * k)], [(0, 0, 10, 10, 0)], index=k) for k in range(4)]
    images[0] = image([(0, 0, 10, 10, 0, 0.9), (50, 50, 60, 60, 0, 0.5)], [(0, 0, 10, 10, 0)])
    images.append(image([], [(0, 0, 10, 10, 0)], index=4))
    # Recall reaches exactly 0.8 at precision 1: 101-point AP counts k/100 <= 0.8, i.e. 81 points.
    assert ap(images, COCO)["map_50"] == pytest.approx(81 / 101, abs=1e-12)
    assert ap(images)["map_50"] == pytest.approx(0.8, abs=1e-12)
    assert ap(images, VOC07)["map_50"] == pytest.approx(9 / 11, abs=1e-12)  # t = 0 .. 0.8


def test_eleven_point_thresholds_are_exact_tenths():
    # Recall stops at exactly 3/10; np.arange(0, 1.1, 0.1)[3] = 0.30000000000000004 would miss t = 0.3.
    assert average_precision(np.array([0.1, 0.2, 3 / 10]), np.ones(3), eleven_point=True) == pytest.approx(4 / 11)
    assert average_precision(np.zeros(0), np.zeros(0), eleven_point=True) == 0.0
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_matched_recall_is_one_to_one_not_coverage():
    # One detection overlaps both cats (IoU 1 and 0.9): it finds one of them, not two.
    result = ap([image([(0, 0, 10, 10, 0, 0.9)], [(0, 0, 10, 10, 0), (0, 0, 10, 9, 0)])])
    assert result["recall_50"] == 0.5


def test_equal_iou_goes_to_the_first_box_in_annotation_order():
    # Two identical GT boxes: both detections pick the first; the second detection is a duplicate.
    arrays = stack_predictions([image([(0, 0, 10, 10, 0, 0.9), (0, 0, 10, 10, 0, 0.8)],
                                      [(50, 50, 60, 60, 0), (0, 0, 10, 10, 0), (0, 0, 10, 10, 0)])], 3)
    matches = match_detections(arrays)
    assert matches.best_gt.tolist() == [1, 1]
    assert matches.true_positive.tolist() == [True, False] and matches.false_positive.tolist() == [False, True]


@pytest.mark.parametrize("max_pairs", [1, 3, 50])
def test_matching_in_chunks_equals_one_pass(max_pairs):
    arrays = stack_predictions(random_set(7, grid=True), len(NAMES))
    one_gt, one_iou = best_gt_per_detection(arrays)
    chunk_gt, chunk_iou = best_gt_per_detection(arrays, max_pairs=max_pairs)
    assert (one_gt >= 0).sum() > 50 and chunk_gt.tolist() == one_gt.tolist()
    np.testing.assert_array_equal(chunk_iou, one_iou)


def test_empty_set_gives_nan():
    result = ap([])
    assert math.isnan(result["map_50"]) and (result["num_images"], result["num_gt"], result["num_detections"]) == (0, 0, 0)


def test_bad_inputs_are_rejected_with_the_argument_named():
    with pytest.raises(ValueError, match="method"):
        ap([image()], "voc12")
    with pytest.raises(ValueError, match=r"predictions\[0\].*classes"):
        ap([image([(0, 0, 5, 5, 3, 0.5)], [(0, 0, 5, 5, 0)])])
    bad = image([(0, 0, 5, 5, 0, 0.5)], [(0, 0, 5, 5, 0)])
    bad.gt_difficult = torch.zeros(2, dtype=torch.bool)
    with pytest.raises(ValueError, match="gt_difficult"):
        ap([bad])
    nan_score = image([(0, 0, 5, 5, 0, float("nan"))], [(0, 0, 5, 5, 0)])
    with pytest.raises(ValueError, match="scores.*finite"):
        ap([nan_score])


def test_missing_difficult_flags_default_to_false():
    p = ImagePrediction(0, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0),
                        torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0]))
    assert p.gt_difficult.tolist() == [False]


# ---------------------------------------------------------------- devkit-style oracle


@dataclass
class _Det:
    image: int
    box: list[float]
    score: float


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inters = iw * ih
    uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inters
    return inters / uni


def _devkit_ap(rec: list[float], prec: list[float], use_07: bool) -> float:
    if use_07:
        total = 0.0
        for t in [k / 10 for k in range(11)]:
            above = [p for r, p in zip(rec, prec) if r >= t]
            total += (max(above) if above else 0.0) / 11
        return total
    mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def devkit_voc_eval(images: list[ImagePrediction], cls: int, use_07: bool) -> tuple[float | None, int, int]:
    """(AP or None, TPs, positives) of class ``cls``, loop by loop like the devkit."""
    recs, npos = {}, 0
    for i, p in enumerate(images):
        rows = [j for j in range(len(p.gt_classes)) if int(p.gt_classes[j]) == cls]
        difficult = [bool(p.gt_difficult[j]) for j in rows]
        recs[i] = {"bbox": [p.gt_boxes[j].double().tolist() for j in rows], "difficult": difficult,
                   "det": [False] * len(rows)}
        npos += sum(not d for d in difficult)
    dets = [_Det(i, p.boxes[k].double().tolist(), float(p.scores[k]))
            for i, p in enumerate(images) for k in range(len(p.classes)) if int(p.classes[k]) == cls]
    dets = sorted(dets, key=lambda d: -d.score)  # Python's sort is stable, like MATLAB's
    tp, fp = [0.0] * len(dets), [0.0] * len(dets)
    for d, det in enumerate(dets):
        R = recs[det.image]
        ovmax, jmax = -math.inf, -1
        for j, bbgt in enumerate(R["bbox"]):
            ov = _iou(det.box, bbgt)
            if ov > ovmax:
                ovmax, jmax = ov, j
        if ovmax >= 0.5:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    if npos == 0:
        return None, 0, 0
    ctp, cfp, rec, prec = 0.0, 0.0, [], []
    for t, f in zip(tp, fp):
        ctp, cfp = ctp + t, cfp + f
        rec.append(ctp / npos)
        prec.append(ctp / max(ctp + cfp, sys.float_info.epsilon))
    return _devkit_ap(rec, prec, use_07), int(ctp), npos


@pytest.mark.parametrize("grid", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_devkit_transliteration(seed, grid):
    images = random_set(seed, grid=grid)
    for method, use_07 in ((VOC, False), (VOC07, True)):
        result = ap(images, method)
        oracle = [devkit_voc_eval(images, c, use_07) for c in range(len(NAMES))]
        for name, (expected, _, _) in zip(NAMES, oracle, strict=True):
            got = result["per_class_ap_50"][name]
            assert (got is None) == (expected is None), (method, name)
            if expected is not None:
                assert got == pytest.approx(expected, abs=1e-6), (method, name)
        present = [e for e, _, _ in oracle if e is not None]
        assert result["map_50"] == pytest.approx(sum(present) / len(present), abs=1e-6)
        assert result["recall_50"] == pytest.approx(sum(o[1] for o in oracle) / sum(o[2] for o in oracle), abs=1e-12)
