"""The runtime datasets (rcnn_kit.data.datasets) against hand-computed geometry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from rcnn_kit.data import (
    SYNTHETIC_CLASSES,
    Record,
    VOCJsonDataset,
    VOCXmlDataset,
    denormalize,
    make_loader,
    make_synthetic_voc,
    split_ids,
)
from rcnn_kit.data.transforms import normalize

RED, BLUE = (255, 0, 0), (0, 0, 255)
CLASSES = ("cat", "dog")


def _expected_box(box: list[float], width: int, height: int, size: int) -> list[float] | None:
    """Oracle for images whose sides are exact multiples of ``size``: scale, shift, clamp."""
    scale = size / min(width, height)
    left = (width * scale - size) / 2
    top = (height * scale - size) / 2
    x1, y1, x2, y2 = box
    out = [x1 * scale - left, y1 * scale - top, x2 * scale - left, y2 * scale - top]
    out = [min(max(v, 0.0), size) for v in out]
    return out if out[2] > out[0] and out[3] > out[1] else None


def _two_colour_image(path: Path, width: int, height: int) -> None:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    image.save(path)


def _write_json(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records))
    return path


@pytest.fixture()
def wide(tmp_path: Path) -> Path:
    """A 200x100 image (left half red) with three boxes, one of which the crop removes."""
    (tmp_path / "img").mkdir()
    _two_colour_image(tmp_path / "img" / "a.png", 200, 100)
    objects = [
        {"name": "dog", "xyxy": [10, 10, 50, 50]},  # ends up left of the crop
        {"name": "cat", "xyxy": [60, 20, 140, 80]},
        {"name": "dog", "xyxy": [0, 0, 200, 100]},
    ]
    return _write_json(tmp_path / "train.json", [["img/a.png", objects]])


def test_item_geometry_matches_hand_computation(wide: Path) -> None:
    size = 50
    ds = VOCJsonDataset(wide, image_size=size, max_boxes=4, class_names=CLASSES)
    assert len(ds) == 1 and ds.class_names == CLASSES
    path, image, gt = ds[0]
    assert path == str(wide.parent / "img" / "a.png")
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert gt.shape == (4, 5) and gt.dtype == torch.float32
    raw = json.loads(wide.read_text())[0][1]
    expected = [
        _expected_box(o["xyxy"], 200, 100, size) + [CLASSES.index(o["name"])]
        for o in raw
        if _expected_box(o["xyxy"], 200, 100, size) is not None
    ]
    assert len(expected) == 2
    torch.testing.assert_close(gt[:2], torch.tensor(expected))
    assert (gt[2:] == -1).all()
    # Crop starts at x = 25 in the 100x50 resized image: red (x < 50 there) covers crop columns < 25.
    pixels = denormalize(image)
    assert pixels[:, 25, 10].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=0.02)
    assert pixels[:, 25, 40].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=0.02)


def test_tall_image_crops_vertically(tmp_path: Path) -> None:
    Image.new("RGB", (60, 180)).save(tmp_path / "t.png")
    box = [6, 30, 54, 150]
    _write_json(tmp_path / "d.json", [["t.png", [{"name": "cat", "xyxy": box}]]])
    _, _, gt = VOCJsonDataset(tmp_path / "d.json", image_size=30, max_boxes=2, class_names=CLASSES)[0]
    torch.testing.assert_close(gt[0, :4], torch.tensor(_expected_box(box, 60, 180, 30)))


def test_explicit_image_root(tmp_path: Path, wide: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.move(wide, other / "train.json")
    ds = VOCJsonDataset(other / "train.json", image_root=tmp_path, image_size=50, class_names=CLASSES)
    assert ds[0][0] == str(tmp_path / "img" / "a.png")


def test_max_boxes_keeps_the_first_and_warns_once(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    objects = [{"name": "cat", "xyxy": [i, i, i + 10, i + 10]} for i in range(5)]
    _write_json(tmp_path / "d.json", [["a.png", objects], ["a.png", objects]])
    with pytest.warns(UserWarning, match="2 image.*more than max_boxes=3") as record:
        ds = VOCJsonDataset(tmp_path / "d.json", image_size=40, max_boxes=3, class_names=CLASSES)
    assert len(record) == 1
    gt = ds[0][2]
    torch.testing.assert_close(gt[:, 0], torch.tensor([0.0, 1.0, 2.0]))


def test_image_without_boxes_is_all_padding(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    _write_json(tmp_path / "d.json", [["a.png", []]])
    gt = VOCJsonDataset(tmp_path / "d.json", image_size=32, max_boxes=5, class_names=CLASSES)[0][2]
    assert (gt == -1).all()


@pytest.mark.parametrize(
    "content, match",
    [
        ('[["a.png", [{"name": "cat", "xyxy": [1, 2, 3, 4]}]', "line 1 column"),
        ('{"a.png": []}', "expected a JSON list"),
        ('[["a.png", []], ["a.png"]]', "record 1"),
        ('[["a.png", [{"name": "cat", "xyxy": [1, 2, 3]}]]]', "record 0, object 0"),
        ('[["a.png", [{"name": "cow", "xyxy": [1, 2, 3, 4]}]]]', "unknown class name 'cow'"),
        ('[["a.png", [{"name": "cat", "xyxy": [5, 2, 3, 4]}]]]', "record 0, object 0: box"),
        ('[["a.png", [{"name": "cat", "xyxy": [1, 2, 3, 4], "difficult": 1}]]]', "object 0: 'difficult'"),
    ],
)
def test_bad_json_errors_name_the_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        VOCJsonDataset(path, class_names=CLASSES)
    assert str(path) in str(info.value)


def test_missing_paths(tmp_path: Path, wide: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        VOCJsonDataset(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="image_root.*nodir"):
        VOCJsonDataset(wide, image_root=tmp_path / "nodir")


def test_unreadable_or_missing_image_is_named_at_getitem(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _write_json(tmp_path / "d.json", [["broken.jpg", []], ["gone.jpg", []]])
    ds = VOCJsonDataset(tmp_path / "d.json", class_names=CLASSES)
    with pytest.raises(ValueError, match="broken.jpg"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        ds[1]


def test_xml_dataset_matches_json_dataset_on_synthetic_data(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path / "syn", num_images=6, image_size=64, seed=1)
    for split in ("train", "val"):
        from_json = VOCJsonDataset(root / f"{split}.json", image_size=48, class_names=SYNTHETIC_CLASSES)
        from_xml = VOCXmlDataset(root, split, image_size=48, class_names=SYNTHETIC_CLASSES)
        assert len(from_json) == len(from_xml) > 0
        for a, b in zip(from_json, from_xml, strict=True):
            assert a[0] == b[0]
            torch.testing.assert_close(a[1], b[1])
            torch.testing.assert_close(a[2], b[2])


def test_xml_dataset_without_image_sets_uses_the_seeded_split(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path / "syn", num_images=10, image_size=48, seed=2)
    shutil.rmtree(root / "ImageSets")
    ids = [f"{i:06d}" for i in range(10)]
    train, val = split_ids(ids, 0.3, seed=5)
    ds = VOCXmlDataset(root, "val", image_size=48, class_names=SYNTHETIC_CLASSES, val_fraction=0.3, seed=5)
    assert ds.ids == val
    assert VOCXmlDataset(root, "train", class_names=SYNTHETIC_CLASSES, val_fraction=0.3, seed=5).ids == train
    assert len(VOCXmlDataset(root, "trainval", class_names=SYNTHETIC_CLASSES)) == 10
    with pytest.raises(ValueError, match="split: 'test'"):
        VOCXmlDataset(root, "test", class_names=SYNTHETIC_CLASSES)


def test_xml_dataset_difficult_and_errors(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "JPEGImages" / "a.jpg")
    xml = (
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>40</height></size>"
        "<object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "Annotations" / "a.xml").write_text(xml)
    assert (VOCXmlDataset(tmp_path, "trainval", image_size=40, class_names=CLASSES)[0][2] == -1).all()
    kept = VOCXmlDataset(tmp_path, "trainval", image_size=40, keep_difficult=True, class_names=CLASSES)[0][2]
    assert kept[0].tolist() == [1.0, 1.0, 20.0, 20.0, 0.0]
    boxes, classes, difficult = VOCXmlDataset(tmp_path, "trainval", image_size=40, class_names=CLASSES).eval_ground_truth(0)
    assert boxes.tolist() == [[1.0, 1.0, 20.0, 20.0]] and classes.tolist() == [0] and difficult.tolist() == [True]
    (tmp_path / "Annotations" / "a.xml").write_text(
        xml.replace(">cat<", ">cow<").replace("<difficult>1", "<difficult>0")
    )
    with pytest.raises(ValueError, match="a.xml.*unknown class name 'cow'"):
        VOCXmlDataset(tmp_path, "trainval", class_names=CLASSES)
    with pytest.raises(FileNotFoundError, match="Annotations"):
        VOCXmlDataset(tmp_path / "JPEGImages")


def _difficult_json(tmp_path: Path) -> Path:
    """The ``wide`` image with a normal dog, a difficult cat, a normal cat and a box the crop removes."""
    (tmp_path / "img").mkdir()
    _two_colour_image(tmp_path / "img" / "a.png", 200, 100)
    objects = [
        {"name": "dog", "xyxy": [60, 20, 140, 80]},
        {"name": "cat", "xyxy": [70, 30, 120, 90], "difficult": True},
        {"name": "cat", "xyxy": [10, 10, 40, 40]},  # left of the crop: empty after it
        {"name": "cat", "xyxy": [100, 0, 150, 50], "difficult": False},
    ]
    return _write_json(tmp_path / "d.json", [["img/a.png", objects]])


def test_training_items_leave_difficult_boxes_out_evaluation_keeps_them_flagged(tmp_path: Path) -> None:
    size = 50
    path = _difficult_json(tmp_path)
    ds = VOCJsonDataset(path, image_size=size, max_boxes=3, class_names=CLASSES)
    assert ds.records[0].difficult == (False, True, False, False) and ds.records[0].labels == (1, 0, 0, 0)
    gt = ds[0][2]
    expected = {i: _expected_box(o["xyxy"], 200, 100, size) for i, o in enumerate(json.loads(path.read_text())[0][1])}
    assert expected[2] is None
    torch.testing.assert_close(gt[:2, :4], torch.tensor([expected[0], expected[3]]))  # difficult box 1 left out
    assert gt[:2, 4].tolist() == [1.0, 0.0] and (gt[2:] == -1).all()
    boxes, classes, difficult = ds.eval_ground_truth(0)
    torch.testing.assert_close(boxes, torch.tensor([expected[0], expected[1], expected[3]]))
    assert classes.tolist() == [1, 0, 0] and difficult.tolist() == [False, True, False]
    # keep_difficult trains on it too; evaluation still flags it.
    kept = VOCJsonDataset(path, image_size=size, max_boxes=4, class_names=CLASSES, keep_difficult=True)
    torch.testing.assert_close(kept[0][2][:3, :4], boxes)
    assert kept.eval_ground_truth(0)[2].tolist() == [False, True, False]


def test_eval_ground_truth_is_not_cut_at_max_boxes(tmp_path: Path) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    objects = [{"name": "cat", "xyxy": [i, i, i + 10, i + 10]} for i in range(5)]
    _write_json(tmp_path / "d.json", [["a.png", objects]])
    with pytest.warns(UserWarning, match="max_boxes=3"):
        ds = VOCJsonDataset(tmp_path / "d.json", image_size=40, max_boxes=3, class_names=CLASSES)
    torch.testing.assert_close(ds.eval_ground_truth(0)[0][:, 0], torch.arange(5, dtype=torch.float32))


def test_eval_ground_truth_equals_the_training_gt_on_synthetic_data(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path / "syn", num_images=4, image_size=64, seed=3)
    ds = VOCXmlDataset(root, "trainval", image_size=48, class_names=SYNTHETIC_CLASSES)
    for index in range(len(ds)):
        gt = ds[index][2]
        real = gt[:, 4] >= 0
        boxes, classes, difficult = ds.eval_ground_truth(index)
        torch.testing.assert_close(boxes, gt[real, :4])
        assert classes.tolist() == gt[real, 4].long().tolist() and not difficult.any()


def test_record_checks_its_flags() -> None:
    assert Record(Path("a.jpg"), ((0, 0, 1, 1),), (0,)).difficult == (False,)
    with pytest.raises(ValueError, match="2 difficult flags for 1 boxes"):
        Record(Path("a.jpg"), ((0, 0, 1, 1),), (0,), (True, False))


def test_make_loader_batches_and_seeded_order(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path / "syn", num_images=5, image_size=40, seed=0, val_fraction=0.0)
    ds = VOCJsonDataset(root / "train.json", image_size=32, max_boxes=6, class_names=SYNTHETIC_CLASSES)
    paths, images, gt = next(iter(make_loader(ds, batch_size=4, shuffle=False)))
    assert len(paths) == 4 and images.shape == (4, 3, 32, 32) and gt.shape == (4, 6, 5)
    order = [p for batch in make_loader(ds, 2, shuffle=True, seed=7) for p in batch[0]]
    assert order == [p for batch in make_loader(ds, 2, shuffle=True, seed=7) for p in batch[0]]
    assert sorted(order) == sorted(r[0] for r in ds)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, 0, shuffle=False)


def test_denormalize_inverts_normalize() -> None:
    pixels = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    torch.testing.assert_close(denormalize(normalize(pixels)), pixels.float() / 255)
    assert denormalize(normalize(pixels)[None]).shape == (1, 3, 5, 7)
    with pytest.raises(ValueError, match=r"shape \(4, 5, 7\)"):
        denormalize(torch.zeros(4, 5, 7))
