"""The synthetic shapes generator (rcnn_kit.data.synthetic)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rcnn_kit.data import SYNTHETIC_CLASSES, make_synthetic_voc, read_class_names, synthetic
from rcnn_kit.data.voc import parse_voc_xml, read_image_set

#: JPEG softens edges; a drawn edge may read one pixel off.
EDGE_TOLERANCE_PX = 1
#: With a black background and no noise, every palette colour has a channel above this.
SHAPE_THRESHOLD = 100


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_same_bytes_and_seed_matters(tmp_path: Path) -> None:
    a = _all_bytes(make_synthetic_voc(tmp_path / "a", num_images=4, image_size=64, seed=3))
    b = _all_bytes(make_synthetic_voc(tmp_path / "b", num_images=4, image_size=64, seed=3))
    c = _all_bytes(make_synthetic_voc(tmp_path / "c", num_images=4, image_size=64, seed=4))
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert len([k for k in a if k.startswith("JPEGImages/")]) == 4


def test_layout_splits_and_annotations_agree(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path / "s", num_images=10, image_size=96, seed=0, min_objects=2, max_objects=3)
    assert read_class_names(root) == SYNTHETIC_CLASSES
    train, val = read_image_set(root, "train"), read_image_set(root, "val")
    assert sorted(train + val) == read_image_set(root, "trainval") == [f"{i:06d}" for i in range(10)]
    assert len(val) == 2
    for split, ids in (("train", train), ("val", val)):
        records = json.loads((root / f"{split}.json").read_text())
        assert [r[0] for r in records] == [f"JPEGImages/{i}.jpg" for i in ids]
        for (image_path, objects), image_id in zip(records, ids, strict=True):
            ann = parse_voc_xml(root / "Annotations" / f"{image_id}.xml")
            assert [(o.name, list(o.box)) for o in ann.objects] == [(o["name"], o["xyxy"]) for o in objects]
            assert 2 <= len(objects) <= 3
            with Image.open(root / image_path) as image:
                assert image.size == (ann.width, ann.height) == (96, 96)


def test_objects_are_large_separate_and_inside(tmp_path: Path) -> None:
    size = 224
    root = make_synthetic_voc(tmp_path / "s", num_images=16, image_size=size, seed=5)
    low, high = (f * size for f in synthetic.OBJECT_SIDE_FRACTION)
    for _, objects in json.loads((root / "train.json").read_text()) + json.loads((root / "val.json").read_text()):
        boxes = [o["xyxy"] for o in objects]
        for x1, y1, x2, y2 in boxes:
            assert 0 < x1 < x2 < size and 0 < y1 < y2 < size
            # Triangles and ellipses can be a pixel short of their rectangle.
            assert low - 2 <= x2 - x1 <= high and low - 2 <= y2 - y1 <= high
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_boxes_are_tight_around_the_drawn_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Black background, no noise: the shapes are the only bright pixels.
    monkeypatch.setattr(synthetic, "BACKGROUND_RANGE", (0, 1))
    monkeypatch.setattr(synthetic, "NOISE_STD", 0.0)
    root = make_synthetic_voc(tmp_path / "s", num_images=8, image_size=128, seed=11, val_fraction=0.0)
    for image_path, objects in json.loads((root / "train.json").read_text()):
        bright = np.asarray(Image.open(root / image_path)).max(axis=2) > SHAPE_THRESHOLD
        covered = np.zeros_like(bright)
        for o in objects:
            x1, y1, x2, y2 = o["xyxy"]
            region = bright[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2]
            ys, xs = np.nonzero(region)
            found = [
                xs.min() + max(x1 - 2, 0),
                ys.min() + max(y1 - 2, 0),
                xs.max() + 1 + max(x1 - 2, 0),
                ys.max() + 1 + max(y1 - 2, 0),
            ]
            assert np.abs(np.array(found) - np.array(o["xyxy"])).max() <= EDGE_TOLERANCE_PX, (image_path, o, found)
            covered[y1:y2, x1:x2] = True
        assert not (bright & ~covered).any(), f"{image_path}: bright pixels outside every box"


def test_is_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_synthetic_voc(tmp_path / "s", num_images=16)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, "num_images"),
        ({"image_size": 16}, "image_size"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"min_objects": 0}, "min_objects"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic_voc(tmp_path / "s", **kwargs)
