"""Reference RPN and FasterRCNN: shapes, gradients, edge cases, RoIAlign, sampling."""

from __future__ import annotations

import pytest
import torch
from torchvision import ops

from rcnn_kit.backbone import DetectorBackboneWithFPN

STRIDES = {"p3": 8, "p4": 16, "p5": 32}
IMAGE = 224
C = 32  # FPN channels in these tests


def fake_feats(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {k: torch.randn(batch, C, IMAGE // s, IMAGE // s, generator=generator) for k, s in STRIDES.items()}


def gt_batch(batch: int, boxes_per_image: list[list[list[float]]]) -> torch.Tensor:
    gt = torch.full((batch, 40, 5), -1.0)
    for i, rows in enumerate(boxes_per_image):
        if rows:
            gt[i, : len(rows)] = torch.tensor(rows)
    return gt


GT = [[[20, 30, 120, 150, 1], [100, 100, 200, 180, 2]], [[0, 0, 224, 224, 0]], []]


def test_match_anchors_semantics(ref):
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60], [0, 0, 10, 7]])
    gt = torch.tensor([[0.0, 0, 10, 10, 4]] + [[-1.0] * 5] * 3)
    out = ref.rpn.rcnn_match_anchors_to_gt(anchors, gt, (0.3, 0.6))
    assert out[0].tolist() == [0, 0, 10, 10, 4]  # IoU 1: foreground
    assert (out[1] == -1e8).all()  # IoU 0.5: neutral
    assert (out[2] == -1).all()  # IoU 0: background
    assert out[3].tolist() == [0, 0, 10, 10, 4]  # IoU 0.7
    empty = ref.rpn.rcnn_match_anchors_to_gt(anchors, torch.full((40, 5), -1.0), (0.3, 0.6))
    assert (empty == -1).all() and empty.shape == (4, 5)


def test_sampling_respects_fraction_and_generator(ref):
    matched = torch.full((100, 5), -1.0)
    matched[:10, 4] = 1  # 10 foreground, 90 background
    fg, bg = ref.rpn.sample_rpn_training(matched, 16, 0.5, torch.Generator().manual_seed(3))
    assert len(fg) == 8 and len(bg) == 8 and (fg < 10).all() and (bg >= 10).all()
    fg2, bg2 = ref.rpn.sample_rpn_training(matched, 16, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(fg, fg2) and torch.equal(bg, bg2)
    fg, bg = ref.rpn.sample_rpn_training(matched, 64, 0.5)
    assert len(fg) == 10 and len(bg) == 54  # too few foreground: background fills up


def test_prediction_network_shapes_and_init(ref):
    net = ref.rpn.RPNPredictionNetwork(C, [16, 24], num_anchors=3)
    assert [type(m).__name__ for m in net.stem_rpn] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert net.pred_obj.out_channels == 3 and net.pred_box.out_channels == 12
    assert all((m.bias == 0).all() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert 0.005 < net.pred_box.weight.std() < 0.015
    feats = {"p3": torch.randn(2, C, 6, 9), "p5": torch.randn(2, C, 2, 3)}
    obj, box = net(feats)
    assert obj["p3"].shape == (2, 6 * 9 * 3) and box["p3"].shape == (2, 6 * 9 * 3, 4)
    assert obj["p5"].shape == (2, 18) and box["p5"].shape == (2, 18, 4)
    # Location-major: index (y * W + x) * A + a is anchor a at (x, y).
    stem = net.stem_rpn(feats["p3"])
    raw = net.pred_obj(stem)  # (B, A, H, W)
    y, x, a = 4, 7, 2
    assert torch.allclose(obj["p3"][1, (y * 9 + x) * 3 + a], raw[1, a, y, x])
    raw_box = net.pred_box(stem)  # (B, 4A, H, W), channels (A, 4)
    assert torch.allclose(box["p3"][1, (y * 9 + x) * 3 + a], raw_box[1, 4 * a : 4 * a + 4, y, x])


def test_rpn_train_and_eval(ref):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    rpn = ref.rpn.RPN(C, [C], batch_size_per_image=16, pre_nms_topk=50, post_nms_topk=10)
    feats = {k: v.requires_grad_() for k, v in fake_feats(3, g).items()}
    out = rpn(feats, STRIDES, gt_batch(3, GT))
    assert set(out) == {"proposals", "loss_rpn_obj", "loss_rpn_box"}
    for level in STRIDES:
        assert len(out["proposals"][level]) == 3
        for props in out["proposals"][level]:
            assert props.shape[1] == 4 and 0 < props.shape[0] <= 10
            assert not props.requires_grad
            assert (props >= 0).all() and (props <= IMAGE).all()
    (out["loss_rpn_obj"] + out["loss_rpn_box"]).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rpn.parameters())
    assert feats["p3"].grad is not None
    rpn.eval()
    assert set(rpn(feats, STRIDES)) == {"proposals"}


def test_rpn_requires_gt_in_training(ref):
    rpn = ref.rpn.RPN(C, [C], batch_size_per_image=16)
    with pytest.raises(ValueError, match="gt_boxes"):
        rpn(fake_feats(1, torch.Generator().manual_seed(0)), STRIDES)


def test_rpn_loss_is_pinned_for_a_seed(ref):
    """Seeded expected values: catch accidental changes to the reference's losses."""
    torch.manual_seed(0)
    rpn = ref.rpn.RPN(C, [C], batch_size_per_image=16)
    rpn.generator = torch.Generator().manual_seed(0)
    out = rpn(fake_feats(2, torch.Generator().manual_seed(1)), STRIDES, gt_batch(2, GT[:2]))
    assert out["loss_rpn_obj"].item() == pytest.approx(0.69314, abs=2e-3)  # log 2: logits near 0 at init
    assert 0 < out["loss_rpn_box"].item() < 1.0


def build(ref, num_classes=3):
    torch.manual_seed(0)
    backbone = DetectorBackboneWithFPN(C, pretrained=False)
    rpn = ref.rpn.RPN(C, [C], batch_size_per_image=16, pre_nms_topk=100, post_nms_topk=20)
    return ref.detector.FasterRCNN(backbone, rpn, [C], num_classes, batch_size_per_image=16)


def test_faster_rcnn_train_eval_shapes_and_gradients(ref):
    model = build(ref)
    images = torch.randn(3, 3, IMAGE, IMAGE)
    losses = model(images, gt_batch(3, GT))  # batch > 1, one image without GT
    assert set(losses) == {"loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    for name in ("roi_stem.0.weight", "cls_pred.weight", "box_pred.weight", "rpn.pred_net.pred_obj.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.eval()
    boxes, classes, scores = model(images[:1], test_score_thresh=0.0, test_nms_thresh=0.5)
    assert boxes.shape[1] == 4 and classes.shape == scores.shape == (boxes.shape[0],)
    assert classes.dtype == torch.int64 and (classes >= 0).all() and (classes < 3).all()
    assert (scores[:-1] >= scores[1:]).all()
    assert (boxes >= 0).all() and (boxes <= IMAGE).all()
    with pytest.raises(ValueError, match="one image"):
        model(images[:2])


def test_faster_rcnn_all_images_without_gt(ref):
    model = build(ref)
    losses = model(torch.randn(2, 3, IMAGE, IMAGE), gt_batch(2, [[], []]))
    assert losses["loss_box"].item() == 0.0 and torch.isfinite(losses["loss_cls"])


def test_roi_features_match_per_box_roi_align(ref):
    """Oracle: RoIAlign one box at a time with torchvision, on the level it came from."""
    model = build(ref)
    g = torch.Generator().manual_seed(2)
    feats = fake_feats(2, g)
    props = {
        level: [torch.tensor([[10.0, 20, 90, 120], [0, 0, 224, 224]]), torch.tensor([[50.0, 60, 70, 80]])]
        for level in STRIDES
    }
    boxes, image_ids, level_ids = ref.detector.flatten_proposals(props)
    assert image_ids.tolist() == [0, 0, 1] * 3 and level_ids.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    order = torch.tensor([8, 0, 4, 3, 1])  # any subset in any order, as after sampling
    roi_feats = model._roi_features(feats, boxes[order], image_ids[order], level_ids[order])
    assert roi_feats.shape == (5, C, 7, 7)
    strides = list(STRIDES.items())
    for row, i in enumerate(order.tolist()):
        level, stride = strides[level_ids[i]]
        rois = torch.cat([image_ids[i : i + 1, None].float(), boxes[i : i + 1]], dim=1)
        expected = ops.roi_align(feats[level], rois, (7, 7), 1 / stride, aligned=True)
        torch.testing.assert_close(roi_feats[row : row + 1], expected)


def test_mix_gt_with_proposals_assigns_levels_and_keeps_input(ref):
    props = {level: [torch.zeros(0, 4)] for level in STRIDES}
    gt = gt_batch(1, [[[0, 0, 32, 32, 0], [0, 0, 224, 224, 1], [0, 0, 120, 120, 2]]])
    mixed = ref.detector.mix_gt_with_proposals(props, gt)
    assert mixed["p3"][0].tolist() == [[0, 0, 32, 32]]  # small box -> finest level
    assert mixed["p5"][0].tolist() == [[0, 0, 224, 224]]  # canonical 224 px box -> p5
    assert mixed["p4"][0].tolist() == [[0, 0, 120, 120]]  # floor(5 + log2(120 / 224)) = 4
    assert all(p[0].shape == (0, 4) for p in props.values())  # input untouched
