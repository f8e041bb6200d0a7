"""build_detector on the reference, and the train / eval / demo commands end to end (tiny runs)."""

from __future__ import annotations

import json

import pytest
import torch

from rcnn_kit import cli
from rcnn_kit.build import DetectorConfig, build_detector, build_detector_from_config
from rcnn_kit.commands import resolve_impl_dir
from rcnn_kit.data import SYNTHETIC_CLASSES, make_synthetic_voc

#: Smallest input the CLI accepts (one p5 cell per 32 px): keeps the CPU runs fast.
TINY_SIZE = 64


def test_build_detector_wires_the_course_defaults(ref):
    model = build_detector(ref, num_classes=3, pretrained=False, pre_nms_topk=50)
    assert model.backbone.out_channels == 64
    assert model.cls_pred.out_features == 3 + 1 and model.box_pred.out_features == 4 * 3
    assert model.batch_size_per_image == 32
    assert model.rpn.batch_size_per_image == 16 and model.rpn.pre_nms_topk == 50
    stem_convs = [m for m in model.rpn.pred_net.stem_rpn if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in stem_convs] == [64, 64]


def test_detector_config_round_trip_and_errors():
    config = DetectorConfig(num_classes=5, stem_channels=(32,), rpn_kwargs={"anchor_aspect_ratios": (1.0,)})
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON-able values only
    assert DetectorConfig.from_dict(data) == DetectorConfig(num_classes=5, stem_channels=(32,),
                                                            rpn_kwargs={"anchor_aspect_ratios": [1.0]})
    with pytest.raises(ValueError, match="rpn_kwargs.*anchor_sizes"):
        DetectorConfig(num_classes=3, rpn_kwargs={"anchor_sizes": 3})
    with pytest.raises(ValueError, match="num_classes"):
        DetectorConfig(num_classes=0)
    with pytest.raises(ValueError, match="unknown DetectorConfig fields"):
        DetectorConfig.from_dict({"num_classes": 3, "colour": "red"})
    with pytest.raises(TypeError, match="pkg"):
        build_detector_from_config(object(), config)  # type: ignore[arg-type]


def test_help_lists_the_runtime_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "eval", "demo"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0 and "--pretrained" in capsys.readouterr().out


def test_impl_folder_resolution(tmp_path, monkeypatch, repo_root):
    from rcnn_kit import course

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RCNN_KIT_IMPL", raising=False)
    # From any folder, the kit's own reference is found (the course repository's layout).
    assert resolve_impl_dir(None) == repo_root / "solutions" / "faster_rcnn"
    # A runtime without a course repository beside it (the student bundle) and an empty folder: a clear error.
    monkeypatch.setattr(course, "_RUNTIME_DIR", tmp_path / "bundle" / "rcnn_kit")
    with pytest.raises(FileNotFoundError, match="--impl"):
        resolve_impl_dir(None)
    for folder in ("faster_rcnn", "assignments/faster_rcnn", "solutions/faster_rcnn"):  # lowest priority first
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "iou.py").write_text("")
        assert resolve_impl_dir(None) == tmp_path / folder
    monkeypatch.setenv("RCNN_KIT_IMPL", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="RCNN_KIT_IMPL"):
        resolve_impl_dir(None)


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    code = cli.main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "missing" in capsys.readouterr().err
    code = cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--image-size", "100"])
    assert code == 2 and "--image-size" in capsys.readouterr().err


def test_train_then_eval_end_to_end(tmp_path, repo_root, capsys):
    data = make_synthetic_voc(tmp_path / "data", num_images=4, image_size=TINY_SIZE, seed=0, val_fraction=0.5)
    impl = str(repo_root / "solutions" / "faster_rcnn")
    run = tmp_path / "run"
    code = cli.main(["train", "--impl", impl, "--data", str(data), "--out", str(run), "--iters", "2",
                     "--batch-size", "2", "--image-size", str(TINY_SIZE), "--pretrained", "no", "--device", "cpu",
                     "--quiet"])
    assert code == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["iterations"] == 2 and summary["device"] == "cpu"
    assert set(summary["final_losses"]) >= {"loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box", "total"}
    assert (run / "loss.png").is_file() and (run / "checkpoint.pt").is_file()

    out = tmp_path / "eval"
    code = cli.main(["eval", "--impl", impl, "--checkpoint", str(run / "checkpoint.pt"), "--data", str(data),
                     "--split", "val", "--out", str(out), "--num-pictures", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    report = json.loads((out / "eval_summary.json").read_text())
    assert set(report["metrics"]["per_class_ap_50"]) == set(SYNTHETIC_CLASSES)
    assert report["metrics"]["num_images"] == 2
    assert len(list(out.glob("val_*.png"))) == 1
    assert report["metric"] == report["metrics"]["metric"] == "VOC mAP@0.5 (all-point)"
    assert "VOC mAP@0.5 (all-point)" in capsys.readouterr().out

    code = cli.main(["eval", "--impl", impl, "--checkpoint", str(run / "checkpoint.pt"), "--data", str(data),
                     "--split", "val", "--out", str(out), "--num-pictures", "0", "--device", "cpu", "--quiet",
                     "--metric", "voc07"])
    assert code == 0
    assert json.loads((out / "eval_summary.json").read_text())["metric"] == "VOC07 mAP@0.5 (11-point)"
    assert "VOC07 mAP@0.5 (11-point)" in capsys.readouterr().out


def test_demo_runs_end_to_end(tmp_path, repo_root):
    out = tmp_path / "demo"
    code = cli.main(["demo", "--impl", str(repo_root / "solutions" / "faster_rcnn"), "--out", str(out),
                     "--iters", "1", "--train-images", "2", "--val-images", "1", "--batch-size", "2",
                     "--image-size", str(TINY_SIZE), "--num-pictures", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["train_images"], summary["val_images"], summary["iterations"]) == (2, 1, 1)
    assert set(summary["map_50"]) == {"train", "val"} and summary["metric"] == "VOC mAP@0.5 (all-point)"
    assert {p.name for p in out.glob("*.png")} == {"loss.png", "train_0000.png", "val_0000.png"}
