"""The overfit subset, its manifest and its loader (data_scripts.overfit_subset), from JSON and VOC folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from PIL import Image

from data_scripts.overfit_subset import (
    SelectionRule,
    load_overfit_subset,
    make_overfit_subset,
    make_overfit_subset_from_voc,
    verify_manifest,
)
from rcnn_kit.course import MAX_GT_BOXES
from rcnn_kit.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SYNTHETIC_CLASSES,
    VOC_CLASSES,
    VOCJsonDataset,
    VOCXmlDataset,
    denormalize,
    make_synthetic_voc,
)
from rcnn_kit.data.voc import VocAnnotation, VocObject, write_voc_xml

SIZE = 64
#: Mean absolute difference in [0, 1] that re-encoding a noisy JPEG stays under.
JPEG_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic set with 96 px images, so the subset really resizes (to 64)."""
    root = make_synthetic_voc(
        tmp_path_factory.mktemp("src") / "syn", num_images=12, image_size=96, seed=2, val_fraction=0.0
    )
    return root / "train.json"


def _rule_oracle(source: Path, rule: SelectionRule) -> list[str]:
    """The selection rule written out again for square sources (resize only, no crop)."""
    scale = SIZE / 96
    candidates = []
    for image_path, objects in json.loads(source.read_text()):
        sides = [min(o["xyxy"][2] - o["xyxy"][0], o["xyxy"][3] - o["xyxy"][1]) * scale for o in objects]
        if 1 <= len(objects) <= rule.max_objects and min(sides) >= rule.min_box_side:
            candidates.append(Path(image_path).stem)
    candidates.sort()
    picked = np.random.default_rng(rule.seed).choice(len(candidates), size=rule.count, replace=False)
    return sorted(candidates[int(i)] for i in picked)


def test_seeded_subset_follows_the_rule_and_matches_the_dataset(source: Path, tmp_path: Path) -> None:
    rule = SelectionRule(count=4, seed=1, max_objects=3, min_box_side=14)
    manifest = make_overfit_subset(source, tmp_path / "sub", rule=rule, image_size=SIZE)
    assert manifest["ids"] == _rule_oracle(source, rule)
    assert manifest["selection"] == {"rule": "seeded", "count": 4, "seed": 1, "max_objects": 3, "min_box_side": 14}
    # The subset, read at its own size, gives the boxes the source gives at that size.
    subset = VOCJsonDataset(tmp_path / "sub" / "train.json", image_size=SIZE, class_names=SYNTHETIC_CLASSES)
    full = VOCJsonDataset(source, image_size=SIZE, class_names=SYNTHETIC_CLASSES)
    by_id = {Path(item[0]).stem: item for item in full}
    for path, image, gt in subset:
        _, full_image, full_gt = by_id[Path(path).stem]
        assert image.shape == (3, SIZE, SIZE)
        torch.testing.assert_close(gt, full_gt, atol=0.01, rtol=0)
        # Same picture up to JPEG re-encoding: far closer to its source than to another image.
        same = (denormalize(image) - denormalize(full_image)).abs().mean()
        other = min(
            (denormalize(image) - denormalize(o[1])).abs().mean() for k, o in by_id.items() if k != Path(path).stem
        )
        assert same < JPEG_TOLERANCE < other


def test_manifest_hashes_every_file(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    manifest = make_overfit_subset(source, out, ids=["000003", "000001"], image_size=SIZE)
    assert manifest["ids"] == ["000001", "000003"] and manifest["selection"] == {"rule": "explicit"}
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert manifest["total_bytes"] == sum((out / n).stat().st_size for n in on_disk) < 5 * 1024 * 1024
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert verify_manifest(out) == manifest


def test_same_arguments_same_bytes(source: Path, tmp_path: Path) -> None:
    rule = SelectionRule(count=3, seed=0, min_box_side=10)
    a = make_overfit_subset(source, tmp_path / "a", rule=rule, image_size=SIZE)
    b = make_overfit_subset(source, tmp_path / "b", rule=rule, image_size=SIZE)
    assert a["files"] == b["files"]


def test_verify_manifest_finds_changed_and_missing_files(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    make_overfit_subset(source, out, ids=["000001", "000002"], image_size=SIZE)
    (out / "JPEGImages" / "000001.jpg").unlink()
    with (out / "train.json").open("a") as f:
        f.write(" ")
    with pytest.raises(ValueError, match="2 file") as info:
        verify_manifest(out)
    assert "JPEGImages/000001.jpg: missing" in str(info.value) and "train.json: content differs" in str(info.value)
    (out / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable manifest"):
        verify_manifest(out)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        verify_manifest(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ids": ["000001", "nope"]}, "unknown: \\['nope'\\]"),
        ({"ids": ["000001", "000001"]}, "distinct"),
        ({"rule": SelectionRule(count=50)}, "only .* images qualify"),
        ({"ids": ["000001"], "max_bytes": 100}, "over the limit of 100"),
    ],
)
def test_errors(source: Path, tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_overfit_subset(source, tmp_path / "sub", image_size=SIZE, **kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing written, no staging folder left


def test_rewrite_replaces_a_previous_subset_but_not_other_folders(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    make_overfit_subset(source, out, ids=["000001", "000002"], image_size=SIZE)
    make_overfit_subset(source, out, ids=["000003"], image_size=SIZE)
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["000003.jpg"]  # no stale images
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]  # no staging folder left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an overfit subset"):
        make_overfit_subset(source, other, ids=["000001"], image_size=SIZE)
    assert (other / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def voc_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VOC-layout folder with real VOC class names: 120 x 90 images, XML annotations, a train list.

    No classes.txt (so the 20 VOC classes apply); one difficult box (left out, as in training);
    image ``b`` is listed in val only.
    """
    root = tmp_path_factory.mktemp("voc") / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    objects = {
        "a": [VocObject("dog", (20.0, 10.0, 80.0, 70.0)), VocObject("cat", (60.0, 40.0, 100.0, 85.0), difficult=True)],
        "b": [VocObject("person", (30.0, 5.0, 90.0, 85.0))],
        "c": [VocObject("car", (25.0, 20.0, 95.0, 60.0)), VocObject("bicycle", (40.0, 50.0, 75.0, 88.0))],
        "d": [VocObject("tvmonitor", (18.0, 12.0, 70.0, 50.0))],
    }
    rng = np.random.default_rng(5)
    for image_id, objs in objects.items():
        pixels = rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        write_voc_xml(root / "Annotations" / f"{image_id}.xml", VocAnnotation(f"{image_id}.jpg", 120, 90, tuple(objs)))
    (root / "ImageSets/Main/train.txt").write_text("a\nc\nd\n")
    (root / "ImageSets/Main/val.txt").write_text("b\n")
    return root


def test_subset_from_a_voc_folder(voc_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    rule = SelectionRule(count=2, seed=0, max_objects=2, min_box_side=8)
    manifest = make_overfit_subset_from_voc(voc_folder, out, rule=rule, image_size=SIZE)
    candidates = ["a", "c", "d"]  # the train list; every box survives the crop and is large enough
    picked = np.random.default_rng(0).choice(len(candidates), size=2, replace=False)
    assert manifest["ids"] == sorted(candidates[int(i)] for i in picked)
    assert manifest["source"] == {"kind": "voc-folder", "path": voc_folder.as_posix(), "split": "train"}
    assert manifest["class_names"] == list(VOC_CLASSES) and manifest["image_size"] == SIZE
    assert manifest["format"] == 2 and verify_manifest(out) == manifest
    # Each subset image and its boxes are the VOC folder's, read at S by the runtime dataset.
    subset = VOCJsonDataset(out / "train.json", image_size=SIZE)
    full = {Path(p).stem: (image, gt) for p, image, gt in VOCXmlDataset(voc_folder, "train", image_size=SIZE)}
    for path, image, gt in subset:
        full_image, full_gt = full[Path(path).stem]
        torch.testing.assert_close(gt, full_gt, atol=0.01, rtol=0)
        assert (denormalize(image) - denormalize(full_image)).abs().mean() < JPEG_TOLERANCE
    written = json.loads((out / "train.json").read_text())
    assert all(o["name"] != "cat" for _, objs in written for o in objs)  # the difficult box is left out
    with pytest.raises(ValueError, match="unknown: \\['b'\\]"):
        make_overfit_subset_from_voc(voc_folder, tmp_path / "x", ids=["a", "b"], image_size=SIZE)
    val = make_overfit_subset_from_voc(voc_folder, tmp_path / "v", split="val", ids=["b"], image_size=SIZE)
    assert val["source"]["split"] == "val" and val["ids"] == ["b"]


def test_overfit_subset_cli_from_a_voc_folder(voc_folder: Path, tmp_path: Path) -> None:
    from data_scripts import cli

    out = tmp_path / "sub"
    argv = ["overfit-subset", "--source-voc", str(voc_folder), "--out", str(out), "--ids", "c,a", "--image-size", "64"]
    assert cli.main(argv) == 0
    assert verify_manifest(out)["ids"] == ["a", "c"]


def _normalised(path: Path) -> torch.Tensor:
    """Oracle for one stored image: decode with PIL, scale to [0, 1], ImageNet mean/std by hand."""
    pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)  # (S, S, 3)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return ((pixels - mean) / std).permute(2, 0, 1)  # (S, S, 3) -> (3, S, S)


@pytest.mark.parametrize("kind", ["voc", "synthetic"])
def test_load_overfit_subset(kind: str, voc_folder: Path, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    if kind == "voc":
        make_overfit_subset_from_voc(voc_folder, out, ids=["a", "c", "d"], image_size=SIZE)
        names = list(VOC_CLASSES)
    else:
        make_overfit_subset(source, out, ids=["000001", "000004"], image_size=SIZE)
        names = list(SYNTHETIC_CLASSES)
    images, gt, class_names = load_overfit_subset(out)
    records = json.loads((out / "train.json").read_text())
    assert class_names == names
    assert images.dtype == torch.float32 and images.shape == (len(records), 3, SIZE, SIZE)
    assert gt.dtype == torch.float32 and gt.shape == (len(records), MAX_GT_BOXES, 5)
    for i, (image_path, objects) in enumerate(records):
        torch.testing.assert_close(images[i], _normalised(out / image_path), atol=1e-5, rtol=0)
        expected = torch.full((MAX_GT_BOXES, 5), -1.0)
        for j, obj in enumerate(objects):
            expected[j] = torch.tensor([*obj["xyxy"], float(names.index(obj["name"]))])
        torch.testing.assert_close(gt[i], expected, atol=1e-4, rtol=0)


def test_load_overfit_subset_refuses_what_the_manifest_does_not_vouch_for(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub"
    make_overfit_subset(source, out, ids=["000001", "000002"], image_size=SIZE)
    manifest_path = out / "manifest.json"
    original = manifest_path.read_text()
    manifest = json.loads(original)
    del manifest["files"]["JPEGImages/000002.jpg"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not in the manifest: \\['JPEGImages/000002.jpg'\\]"):
        load_overfit_subset(out)
    manifest = json.loads(original)
    manifest["class_names"] = ["a", "b", "c"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="class_names .* differ from classes.txt"):
        load_overfit_subset(out)
    manifest_path.write_text(original)
    with (out / "JPEGImages" / "000001.jpg").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="JPEGImages/000001.jpg: content differs"):
        load_overfit_subset(out)
