"""Course JSON from VOC XML: VOC2007 lists, the seeded VOC2012 route, bad input (data_scripts.voc_json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_scripts.voc_json import (
    VOC2007_EXPECTED,
    IncompleteDataError,
    collect_records,
    prepare_seeded_split,
    prepare_voc2007,
    write_split,
)
from rcnn_kit.data import SYNTHETIC_CLASSES, make_synthetic_voc, split_ids


def _obj(name: str, box: tuple, difficult: int = 0, parts: str = "") -> str:
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>{parts}</object>"
    )


def _xml(image_id: str, *objects: str) -> str:
    return (
        f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>500</width><height>375</height><depth>3</depth></size>{''.join(objects)}</annotation>"
    )


HEAD = "<part><name>head</name><bndbox><xmin>30</xmin><ymin>5</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></part>"


def _voc(root: Path, xmls: dict[str, str], lists: dict[str, list[str]], missing_images: tuple[str, ...] = ()) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, text in xmls.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(text)
        if image_id not in missing_images:
            Image.new("RGB", (8, 6)).save(root / "JPEGImages" / f"{image_id}.jpg")
    for split, ids in lists.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture()
def hand_made(tmp_path: Path) -> Path:
    xmls = {
        "000001": _xml(
            "000001", _obj("person", (1, 1, 200, 375), parts=HEAD), _obj("dog", (100, 120, 300, 330), difficult=1)
        ),
        "000002": _xml("000002", _obj("cat", (12, 34, 56, 78)), _obj("cat", (1, 2, 500, 375))),
        "000003": _xml("000003", _obj("bottle", (5, 5, 9, 9), difficult=1)),  # only a difficult box
    }
    return _voc(tmp_path / "VOC2007", xmls, {"train": ["000002", "000001"], "val": ["000003"]})


def test_voc2007_route_keeps_raw_coordinates_drops_difficult_and_parts(hand_made: Path) -> None:
    reports = prepare_voc2007(hand_made, check_counts=False)
    train = json.loads((hand_made / "train.json").read_text())
    assert train == [
        [
            "JPEGImages/000002.jpg",
            [{"name": "cat", "xyxy": [12, 34, 56, 78]}, {"name": "cat", "xyxy": [1, 2, 500, 375]}],
        ],
        ["JPEGImages/000001.jpg", [{"name": "person", "xyxy": [1, 1, 200, 375]}]],
    ]
    assert json.loads((hand_made / "val.json").read_text()) == [["JPEGImages/000003.jpg", []]]  # listed: kept
    assert (reports["train"].images_written, reports["train"].boxes_written, reports["train"].difficult_dropped) == (
        2,
        3,
        1,
    )
    assert reports["val"].difficult_dropped == 1 and reports["val"].problems == []


def test_voc2007_route_paths_relative_to_another_out_dir(hand_made: Path, tmp_path: Path) -> None:
    prepare_voc2007(hand_made, tmp_path / "json", splits=("val",), check_counts=False)
    [[image_path, _]] = json.loads((tmp_path / "json" / "val.json").read_text())
    assert (tmp_path / "json" / image_path).resolve() == (hand_made / "JPEGImages" / "000003.jpg").resolve()


def test_voc2007_count_check(hand_made: Path) -> None:
    with pytest.raises(IncompleteDataError, match=f"differ from the known {VOC2007_EXPECTED['train'][0]} / "):
        prepare_voc2007(hand_made)
    assert not (hand_made / "train.json").exists()


@pytest.fixture()
def bad_input(tmp_path: Path) -> Path:
    good = _xml("good", _obj("cat", (1, 1, 20, 20)))
    xmls = {
        "good": good,
        "truncated": good.replace("good", "truncated")[:70],
        "noimage": _xml("noimage", _obj("cat", (1, 1, 20, 20))),
        "reversed": _xml("reversed", _obj("dog", (50, 1, 20, 20)), _obj("dog", (1, 1, 20, 20))),
        "unknown": _xml("unknown", _obj("unicorn", (1, 1, 20, 20)), _obj("cat", (2, 2, 20, 20))),
    }
    return _voc(tmp_path / "bad", xmls, {"train": list(xmls)}, missing_images=("noimage",))


def test_bad_input_is_reported_per_file_and_nothing_is_written(bad_input: Path) -> None:
    with pytest.raises(IncompleteDataError, match="2 image.*could not be read.*--allow-dropped") as info:
        prepare_voc2007(bad_input, splits=("train",), check_counts=False)
    assert not (bad_input / "train.json").exists()
    report = info.value.report
    text = report.summary("train")
    for needle in (
        "truncated.xml",
        "noimage.xml: image listed but missing",
        "reversed.xml",
        "unknown.xml: unknown class name 'unicorn'",
    ):
        assert needle in text
    assert (report.bad_images_dropped, report.bad_boxes_dropped, len(report.problems)) == (2, 2, 4)
    assert "4 problem(s): 2 image(s) and 2 box(es)" in text


def test_bad_input_with_allow_dropped_writes_the_rest_and_says_so(bad_input: Path) -> None:
    [report] = prepare_voc2007(bad_input, splits=("train",), check_counts=False, allow_dropped=True).values()
    written = json.loads((bad_input / "train.json").read_text())
    assert [path for path, _ in written] == ["JPEGImages/good.jpg", "JPEGImages/reversed.jpg", "JPEGImages/unknown.jpg"]
    assert [len(objects) for _, objects in written] == [1, 1, 1]
    assert "3 images and 3 boxes written (of 5 images listed)" in report.summary("train")


def test_bad_boxes_alone_do_not_block_the_json(tmp_path: Path) -> None:
    root = _voc(
        tmp_path / "v", {"a": _xml("a", _obj("cat", (9, 9, 3, 3)), _obj("cat", (1, 1, 4, 4)))}, {"train": ["a"]}
    )
    [report] = prepare_voc2007(root, splits=("train",), check_counts=False).values()
    assert json.loads((root / "train.json").read_text()) == [
        ["JPEGImages/a.jpg", [{"name": "cat", "xyxy": [1, 1, 4, 4]}]]
    ]
    assert report.bad_boxes_dropped == 1 and "a.xml" in report.problems[0]


def test_seeded_split_route_leaves_out_images_without_objects(tmp_path: Path) -> None:
    xmls = {f"2012_{i:03d}": _xml(f"2012_{i:03d}", _obj("horse", (1, 1, 10 + i, 10))) for i in range(10)}
    xmls["2012_empty"] = _xml("2012_empty")
    xmls["2012_difficult"] = _xml("2012_difficult", _obj("horse", (1, 1, 5, 5), difficult=1))
    root = _voc(tmp_path / "VOC2012", xmls, {})
    report = prepare_seeded_split(root, tmp_path / "out", val_fraction=0.2, seed=4)
    assert report.empty_images_left_out == 2 and "2 images without objects left out" in report.summary("x")
    kept = sorted(i for i in xmls if i not in ("2012_empty", "2012_difficult"))
    train_ids, val_ids = split_ids(kept, 0.2, seed=4)
    for split, ids in (("train", train_ids), ("val", val_ids)):
        records = json.loads((tmp_path / "out" / f"{split}.json").read_text())
        assert [Path(p).stem for p, _ in records] == ids
        assert all(
            (tmp_path / "out" / p).resolve() == (root / "JPEGImages" / f"{Path(p).stem}.jpg").resolve()
            for p, _ in records
        )
    assert len(val_ids) == 2


def test_seeded_split_route_needs_the_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Annotations"):
        prepare_seeded_split(tmp_path)


def test_synthetic_xml_rebuilds_the_synthetic_json(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path / "s", num_images=5, image_size=64, seed=9)
    ids = [f"{i:06d}" for i in range(5)]
    records, report = collect_records(root, ids, root, SYNTHETIC_CLASSES)
    train = [line.strip() for line in (root / "ImageSets/Main/train.txt").read_text().splitlines()]
    write_split(records, train, tmp_path / "rebuilt.json", report)
    assert json.loads((tmp_path / "rebuilt.json").read_text()) == json.loads((root / "train.json").read_text())


def test_voc2007_writes_no_split_when_a_later_split_is_bad(tmp_path: Path) -> None:
    good = _xml("a", _obj("cat", (1, 1, 4, 4)))
    root = _voc(
        tmp_path / "v", {"a": good, "b": good.replace("a.jpg", "b.jpg")}, {"train": ["a"], "val": ["b"]}, ("b",)
    )
    with pytest.raises(IncompleteDataError, match="val.json not written"):
        prepare_voc2007(root, check_counts=False)
    assert not (root / "train.json").exists() and not (root / "val.json").exists()
