"""The overfit subset and its manifest (data_scripts.overfit_subset)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_scripts.overfit_subset import SelectionRule, make_overfit_subset, verify_manifest
from rcnn_kit.data import SYNTHETIC_CLASSES, VOCJsonDataset, denormalize, make_synthetic_voc

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
