"""mAP@0.5 and recall against hand-computed cases; predict() with a fake detector."""

from __future__ import annotations

import math

import pytest
import torch
from runtime_fakes import FakeDetectionDataset, padded_gt
from torch import nn

from rcnn_kit.engine import ImagePrediction, mean_average_precision, predict, recall_at_iou
from rcnn_kit.engine.evaluate import split_gt

NAMES = ("cat", "dog", "fish")
#: COCO-style AP samples precision at 101 recall points (0, 0.01, ..., 1).
RECALL_POINTS = 101


def _pred(boxes, classes, scores, gt_rows, index=0) -> ImagePrediction:
    gt_boxes, gt_classes = split_gt(padded_gt(gt_rows))
    return ImagePrediction(
        index=index,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        classes=torch.tensor(classes, dtype=torch.int64),
        scores=torch.tensor(scores, dtype=torch.float32),
        gt_boxes=gt_boxes,
        gt_classes=gt_classes,
    )


def test_split_gt_drops_padding_rows():
    boxes, classes = split_gt(padded_gt([[1, 2, 3, 4, 0], [5, 6, 7, 8, 2]]))
    assert boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert classes.tolist() == [0, 2] and classes.dtype == torch.int64


def test_perfect_detections_give_ap_one():
    gt = [[10, 10, 50, 50, 0], [60, 60, 100, 120, 1]]
    preds = [
        _pred([r[:4] for r in gt], [0, 1], [0.9, 0.8], gt),
        _pred([[5, 5, 30, 30]], [2], [0.7], [[5, 5, 30, 30, 2]], index=1),
    ]
    result = mean_average_precision(preds, NAMES)
    assert result["map_50"] == pytest.approx(1.0)
    assert result["per_class_ap_50"] == pytest.approx({"cat": 1.0, "dog": 1.0, "fish": 1.0})
    assert (result["num_images"], result["num_gt"], result["num_detections"]) == (2, 3, 3)


def test_one_missed_box_halves_recall():
    # Two cats, one found: precision 1 up to recall 0.5, nothing beyond.
    gt = [[10, 10, 50, 50, 0], [60, 60, 100, 100, 0]]
    result = mean_average_precision([_pred([[10, 10, 50, 50]], [0], [0.9], gt)], NAMES)
    expected = 51 / RECALL_POINTS  # recall points 0.00 .. 0.50 have precision 1
    assert result["per_class_ap_50"]["cat"] == pytest.approx(expected)
    assert result["per_class_ap_50"]["dog"] is None and result["per_class_ap_50"]["fish"] is None
    assert result["map_50"] == pytest.approx(expected)


def test_false_positive_ranked_first_lowers_precision():
    # One cat; a wrong box outranks the right one: precision 1/2 at recall 1 for every recall point.
    gt = [[10, 10, 50, 50, 0]]
    result = mean_average_precision([_pred([[70, 70, 90, 90], [10, 10, 50, 50]], [0, 0], [0.9, 0.8], gt)], NAMES)
    assert result["map_50"] == pytest.approx(0.5)


def test_wrong_class_scores_zero_and_class_without_gt_is_left_out():
    gt = [[10, 10, 50, 50, 0]]
    result = mean_average_precision([_pred([[10, 10, 50, 50]], [1], [0.9], gt)], NAMES)
    assert result["per_class_ap_50"]["cat"] == 0.0
    assert result["per_class_ap_50"]["dog"] is None  # detections but no GT: no AP
    assert result["map_50"] == 0.0


def test_iou_threshold_is_half():
    gt = [[0, 0, 10, 10, 0]]
    above = mean_average_precision([_pred([[0, 0, 10, 6]], [0], [0.9], gt)], NAMES)  # IoU 0.6
    below = mean_average_precision([_pred([[0, 0, 10, 4]], [0], [0.9], gt)], NAMES)  # IoU 0.4
    assert above["map_50"] == pytest.approx(1.0) and below["map_50"] == 0.0


def test_no_gt_at_all_gives_nan():
    result = mean_average_precision([_pred([[0, 0, 5, 5]], [0], [0.5], [])], NAMES)
    assert math.isnan(result["map_50"]) and result["num_gt"] == 0


def test_class_index_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="classes"):
        mean_average_precision([_pred([[0, 0, 5, 5]], [3], [0.5], [[0, 0, 5, 5, 0]])], NAMES)


def test_recall_counts_gt_boxes_found_by_same_class():
    gt = [[0, 0, 10, 10, 0], [20, 20, 40, 40, 1], [50, 50, 60, 60, 2], [0, 0, 10, 10, 2]]
    preds = [
        _pred([[0, 0, 10, 6], [20, 20, 40, 40], [50, 50, 60, 54]], [0, 2, 2], [0.9, 0.9, 0.9], gt),
    ]
    # GT 0: IoU 0.6 same class -> found; GT 1: right box, wrong class; GT 2: IoU 0.4; GT 3: no overlap.
    assert recall_at_iou(preds, iou=0.5) == pytest.approx(1 / 4)
    assert recall_at_iou(preds, iou=0.35) == pytest.approx(2 / 4)


def test_recall_without_gt_or_bad_iou_is_an_error():
    with pytest.raises(ValueError, match="ground-truth"):
        recall_at_iou([_pred([], [], [], [])])
    with pytest.raises(ValueError, match="iou"):
        recall_at_iou([_pred([], [], [], [[0, 0, 1, 1, 0]])], iou=0.0)


class _EchoDetector(nn.Module):
    """Eval mode: returns one box per image at a fixed place, scored by the score threshold it got."""

    def forward(self, images, gt_boxes=None, test_score_thresh=None, test_nms_thresh=None):
        assert not self.training and images.shape[0] == 1
        self.seen = (test_score_thresh, test_nms_thresh)
        return torch.tensor([[2.0, 3.0, 20.0, 25.0]]), torch.tensor([1]), torch.tensor([0.75])


def test_predict_runs_in_eval_mode_and_keeps_gt_without_padding():
    model = _EchoDetector().train()
    dataset = FakeDetectionDataset(num_items=3)
    preds = predict(model, dataset, score_thresh=0.2, nms_thresh=0.4, device="cpu", limit=2)
    assert model.training  # mode restored
    assert model.seen == (0.2, 0.4)
    assert [p.index for p in preds] == [0, 1]
    assert preds[0].gt_boxes.tolist() == [[2.0, 3.0, 20.0, 25.0]] and preds[0].gt_classes.tolist() == [0]
    assert preds[1].gt_classes.tolist() == [1]
    # The detector's box equals every GT box but is class 1: found only in image 1.
    assert recall_at_iou(preds) == pytest.approx(0.5)
