"""The notebook's sanity-check helpers in :mod:`rcnn_kit.checks`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torch import nn

from rcnn_kit.checks import check, check_at_least, rel_error, require_all, rpn_top_proposals, seed_conv_weights_
from rcnn_kit.engine import coverage_recall


def test_rel_error_follows_the_course_formula() -> None:
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    y = torch.tensor([[1.0, -2.5], [3.0, 4.0]])
    # max|x - y| = 0.5, max|x| = 4, max|y| = 4
    assert rel_error(x, y) == pytest.approx(0.5 / 8)
    assert rel_error(x, x) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(2.0, 1.0) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"shapes differ, x \(2, 2\) vs y \(4,\)"):
        rel_error(x, y.reshape(-1))


def test_check_prints_pass_or_fail_with_hint(capsys: pytest.CaptureFixture[str]) -> None:
    expected = torch.tensor([10.0, 20.0])
    assert check("close", expected + 1e-6, expected, tol=1e-6) is True
    assert capsys.readouterr().out.startswith("PASS  close: relative error")

    assert check("off", torch.tensor([10.0, 25.0]), expected, hint="look at the width") is False
    out = capsys.readouterr().out
    assert out.startswith("FAIL  off: relative error 1.11e-01") and "hint: look at the width" in out

    assert check("shape", torch.zeros(3), expected, hint="one row per box") is False
    out = capsys.readouterr().out
    assert "FAIL  shape: shape (3,), expected (2,)" in out and "one row per box" in out

    assert check("nan", torch.tensor([math.nan, 1.0]), expected) is False
    assert "NaN or inf" in capsys.readouterr().out


def test_check_rejects_values_that_are_not_numbers() -> None:
    with pytest.raises(TypeError, match="actual"):
        check("bad", {"a": 1}, [1.0])


def test_require_all_raises_naming_the_section(capsys: pytest.CaptureFixture[str]) -> None:
    require_all("IoU", [True, True])
    assert "All 2 IoU checks passed." in capsys.readouterr().out
    with pytest.raises(AssertionError, match="IoU: 1 of 3 checks FAILED"):
        require_all("IoU", [True, False, True])


def test_check_at_least(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_at_least("train mAP", 0.75, 0.7) is True
    assert capsys.readouterr().out == "PASS  train mAP: 0.750 (need >= 0.70)\n"
    assert check_at_least("train mAP", 0.7, 0.7) is True
    capsys.readouterr()
    assert check_at_least("recall", 0.25, 0.7, hint="look at the targets") is False
    out = capsys.readouterr().out
    assert out.startswith("FAIL  recall: 0.250 (need >= 0.70)") and "hint: look at the targets" in out
    assert check_at_least("nan", math.nan, 0.0) is False


class _Head(nn.Module):
    """A stem and two predictors, registered in the order given."""

    def __init__(self, predictors_first: bool) -> None:
        super().__init__()
        if predictors_first:
            self.pred_obj = nn.Conv2d(4, 3, 1)
            self.pred_box = nn.Conv2d(4, 12, 1)
        self.stem_rpn = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        if not predictors_first:
            self.pred_obj = nn.Conv2d(4, 3, 1)
            self.pred_box = nn.Conv2d(4, 12, 1)


def test_seed_conv_weights_ignores_creation_order_and_global_seed() -> None:
    heads = []
    for predictors_first, global_seed in ((False, 1), (True, 2)):
        torch.manual_seed(global_seed)
        head = _Head(predictors_first)
        seed_conv_weights_([head.stem_rpn, head.pred_obj, head.pred_box], seed=0, std=0.1)
        heads.append(head)
    first, second = (dict(h.named_parameters()) for h in heads)
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
    assert float(first["pred_obj.bias"].detach().abs().sum()) == 0.0
    assert 0.05 < float(first["stem_rpn.0.weight"].detach().std()) < 0.2

    other = _Head(False)
    seed_conv_weights_([other.stem_rpn, other.pred_obj, other.pred_box], seed=1, std=0.1)
    assert not torch.equal(other.pred_box.weight, first["pred_box.weight"])
    with pytest.raises(ValueError, match="Conv2d"):
        seed_conv_weights_([nn.ReLU()], seed=0)


class _FixedBackbone(nn.Module):
    fpn_strides = {"p3": 8, "p4": 16}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {level: images[:, :1, ::s, ::s] for level, s in self.fpn_strides.items()}


class _FixedRPN(nn.Module):
    """Proposals by decreasing objectness: on p3 the first GT box comes first, on p4 the second one second."""

    def forward(self, feats: dict[str, torch.Tensor], strides: dict[str, int]) -> dict[str, object]:
        assert not self.training, "proposals are judged in eval mode"
        junk = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        return {"proposals": {
            "p3": [torch.cat([torch.tensor([[10.0, 10.0, 30.0, 30.0]]), junk, junk])],
            "p4": [torch.cat([junk, torch.tensor([[40.0, 40.0, 60.0, 62.0]]), junk])],
        }}


def test_rpn_top_proposals_keeps_the_best_k_per_level() -> None:
    gt = torch.full((40, 5), -1.0)
    gt[0] = torch.tensor([10.0, 10.0, 30.0, 30.0, 2.0])
    gt[1] = torch.tensor([40.0, 40.0, 60.0, 60.0, 0.0])  # IoU 20*20 / (20*22) = 0.91 with its proposal
    dataset = [("a.jpg", torch.zeros(3, 64, 64), gt)]
    backbone, rpn = _FixedBackbone(), _FixedRPN()
    rpn.train()

    top1 = rpn_top_proposals(backbone, rpn, dataset, top_k=1, device="cpu")
    assert rpn.training, "the RPN's mode is restored"
    (prediction,) = top1
    assert prediction.boxes.shape == (2, 4) and prediction.classes.tolist() == [0, 0]
    assert prediction.gt_classes.tolist() == [0, 0], "class-agnostic: every GT box counts as class 0"
    assert coverage_recall(top1) == 0.5
    top2 = rpn_top_proposals(backbone, rpn, dataset, top_k=2, device="cpu")
    assert top2[0].boxes.shape == (4, 4) and coverage_recall(top2) == 1.0
    assert top2[0].scores.tolist() == [1.0, 0.5, 1.0, 0.5], "descending within each level"
    with pytest.raises(ValueError, match="top_k"):
        rpn_top_proposals(backbone, rpn, dataset, top_k=0)
