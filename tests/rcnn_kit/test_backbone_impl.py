"""The runtime backbone and the package importer."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from rcnn_kit import backbone as backbone_module
from rcnn_kit.backbone import DetectorBackboneWithFPN
from rcnn_kit.impl import STUDENT_MODULES, import_faster_rcnn, import_module


def test_backbone_pyramid_shapes_non_square():
    model = DetectorBackboneWithFPN(16, pretrained=False)
    out = model(torch.randn(2, 3, 160, 224))
    assert model.fpn_strides == {"p3": 8, "p4": 16, "p5": 32}
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "p3": (2, 16, 20, 28),
        "p4": (2, 16, 10, 14),
        "p5": (2, 16, 5, 7),
    }


def test_backbone_offline_falls_back_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.setenv(backbone_module.OFFLINE_ENV, "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # empty cache
    monkeypatch.setattr(backbone_module, "_warned_random_init", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DetectorBackboneWithFPN(8)
        DetectorBackboneWithFPN(8)
    messages = [str(w.message) for w in caught if "random init" in str(w.message)]
    assert len(messages) == 1 and "RCNN_KIT_OFFLINE" in messages[0]


def test_backbone_pretrained_true_fails_loudly_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(RuntimeError, match="pretrained=True"):
        DetectorBackboneWithFPN(8, pretrained=True)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_backbone_rejects_bad_channels(bad):
    with pytest.raises(ValueError, match="out_channels"):
        DetectorBackboneWithFPN(bad, pretrained=False)


def test_backbone_rejects_bad_images():
    with pytest.raises(ValueError, match="images"):
        DetectorBackboneWithFPN(8, pretrained=False)(torch.randn(3, 224, 224))


def test_import_two_packages_side_by_side(tmp_path, repo_root):
    ref_dir = repo_root / "solutions" / "faster_rcnn"
    other = tmp_path / "faster_rcnn"
    shutil.copytree(ref_dir, other)
    (other / "iou.py").write_text("def iou(boxes1, boxes2):\n    return 'student'\n")
    a = import_faster_rcnn(ref_dir, name="pkg_a")
    b = import_faster_rcnn(other, name="pkg_b")
    assert import_module(b, "iou").iou(None, None) == "student"
    assert import_module(a, "iou").iou(torch.zeros(1, 4), torch.zeros(1, 4)).shape == (1, 1)
    # Relative imports resolve inside each package: b's nms uses b's iou.
    assert import_module(b, "nms").iou(None, None) == "student"
    assert set(STUDENT_MODULES) == {"iou", "nms", "anchors", "deltas", "rpn", "detector"}


def test_import_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder"):
        import_faster_rcnn(tmp_path / "missing")
    pkg = import_faster_rcnn(tmp_path, name="empty_pkg")
    with pytest.raises(ValueError, match="module"):
        import_module(pkg, "backbone")
