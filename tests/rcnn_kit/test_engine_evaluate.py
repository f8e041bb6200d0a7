"""mean_average_precision's summary, format_map_table, and predict() with a fake detector.

The AP definitions themselves are tested in test_engine_voc_ap.py and test_engine_coco_ap.py.
"""

from __future__ import annotations

import math

import json

import pytest
import torch
from PIL import Image
from runtime_fakes import FakeDetectionDataset, padded_gt
from torch import nn
from torch.utils.data import Subset

from rcnn_kit.commands import METRIC_CHOICES
from rcnn_kit.data import VOCJsonDataset
from rcnn_kit.engine import METRIC_NAMES, ImagePrediction, format_map_table, mean_average_precision, predict
from rcnn_kit.engine.evaluate import split_gt

NAMES = ("cat", "dog", "fish")
#: COCO-style AP samples precision at 101 recall points (0, 0.01, ..., 1).
RECALL_POINTS = 101
#: Keys every summary has, whatever the method.
SUMMARY_KEYS = {"metric", "map_50", "per_class_ap_50", "recall_50", "num_images", "num_gt", "num_difficult",
                "num_detections"}


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
    for method, metric in METRIC_NAMES.items():
        result = mean_average_precision(preds, NAMES, method=method)
        assert set(result) == SUMMARY_KEYS and result["metric"] == metric
        assert result["map_50"] == pytest.approx(1.0) and result["recall_50"] == 1.0
        assert result["per_class_ap_50"] == pytest.approx({"cat": 1.0, "dog": 1.0, "fish": 1.0})
        assert (result["num_images"], result["num_gt"], result["num_difficult"], result["num_detections"]) == (2, 3, 0, 3)
    assert mean_average_precision(preds, NAMES)["metric"] == "VOC mAP@0.5 (all-point)"  # the default


def test_one_missed_box_halves_recall():
    # Two cats, one found: precision 1 up to recall 0.5, nothing beyond.
    gt = [[10, 10, 50, 50, 0], [60, 60, 100, 100, 0]]
    preds = [_pred([[10, 10, 50, 50]], [0], [0.9], gt)]
    result = mean_average_precision(preds, NAMES)
    assert result["per_class_ap_50"] == {"cat": pytest.approx(0.5), "dog": None, "fish": None}
    assert result["map_50"] == pytest.approx(0.5) and result["recall_50"] == 0.5
    coco = mean_average_precision(preds, NAMES, method="coco")
    assert coco["map_50"] == pytest.approx(51 / RECALL_POINTS)  # recall points 0.00 .. 0.50 have precision 1


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


def test_metric_choices_of_the_cli_are_the_methods():
    assert set(METRIC_CHOICES) == set(METRIC_NAMES) and METRIC_CHOICES[0] == "voc"


def test_format_map_table_names_the_metric():
    gt = [[10, 10, 50, 50, 0], [60, 60, 100, 100, 0]]
    preds = [_pred([[10, 10, 50, 50]], [0], [0.9], gt)]
    voc = mean_average_precision(preds, NAMES)
    table = format_map_table({"train": voc, "val": voc}, NAMES).splitlines()
    assert table[0] == "VOC mAP@0.5 (all-point)"
    assert table[-2].split() == ["VOC", "mAP@0.5", "(all-point)", "0.500", "0.500"]
    assert table[-1].split() == ["matched", "recall@0.5", "0.500", "0.500"]
    assert table[3].split() == ["dog", "-", "-"]
    mixed = format_map_table({"a": voc, "b": mean_average_precision(preds, NAMES, method="voc07")}, NAMES)
    assert mixed.splitlines()[0] == "a: VOC mAP@0.5 (all-point); b: VOC07 mAP@0.5 (11-point)"
    assert mixed.splitlines()[-2].split()[0] == "mAP@0.5"


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
    assert preds[0].gt_difficult.tolist() == [False]  # a dataset without difficult flags
    # The detector's box equals every GT box but is class 1: found only in image 1.
    assert mean_average_precision(preds, NAMES)["recall_50"] == pytest.approx(0.5)


def test_predict_carries_difficult_flags_from_the_dataset_also_through_a_subset(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    records = [
        ["a.png", [{"name": "cat", "xyxy": [2, 3, 20, 25]}]],
        ["a.png", [{"name": "dog", "xyxy": [2, 3, 20, 25]}, {"name": "cat", "xyxy": [0, 0, 8, 8], "difficult": True}]],
    ]
    (tmp_path / "d.json").write_text(json.dumps(records))
    dataset = VOCJsonDataset(tmp_path / "d.json", image_size=32, class_names=NAMES)
    assert (dataset[1][2][1:] == -1).all()  # the training item has no difficult box
    preds = predict(_EchoDetector(), Subset(Subset(dataset, [1, 0]), [0, 1]), device="cpu")
    assert [p.gt_classes.tolist() for p in preds] == [[1, 0], [0]]
    assert [p.gt_difficult.tolist() for p in preds] == [[False, True], [False]]
    result = mean_average_precision(preds, NAMES)
    # The dog detection finds the dog; the difficult cat is no positive, so the cat AP comes from image 2 only.
    assert (result["num_gt"], result["num_difficult"], result["per_class_ap_50"]["dog"]) == (3, 1, 1.0)
