"""VOC XML reading/writing, the seeded split and classes.txt (rcnn_kit.data.voc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcnn_kit.data.voc import (
    AnnotationError,
    VocAnnotation,
    VocObject,
    object_problem,
    parse_voc_xml,
    read_class_names,
    split_ids,
    write_class_names,
    write_voc_xml,
)

# A person with <part> boxes (which are not objects), a difficult chair, 1-based coordinates.
PERSON_WITH_PARTS = """<annotation>
  <folder>VOC2007</folder>
  <filename>000123.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object>
    <name>person</name><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>12</ymin><xmax>200</xmax><ymax>375</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>50</xmin><ymin>20</ymin><xmax>90</xmax><ymax>70</ymax></bndbox></part>
    <part><name>hand</name><bndbox><xmin>3</xmin><ymin>150</ymin><xmax>20</xmax><ymax>170</ymax></bndbox></part>
  </object>
  <object>
    <name>chair</name><difficult>1</difficult>
    <bndbox><xmin>300.5</xmin><ymin>200</ymin><xmax>400</xmax><ymax>300</ymax></bndbox>
  </object>
</annotation>
"""


def test_parse_reads_objects_not_parts_and_keeps_raw_coordinates(tmp_path: Path) -> None:
    path = tmp_path / "000123.xml"
    path.write_text(PERSON_WITH_PARTS)
    ann = parse_voc_xml(path)
    assert (ann.filename, ann.width, ann.height) == ("000123.jpg", 500, 375)
    assert ann.objects == (
        VocObject("person", (1.0, 12.0, 200.0, 375.0), difficult=False, truncated=True),
        VocObject("chair", (300.5, 200.0, 400.0, 300.0), difficult=True, truncated=False),
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (PERSON_WITH_PARTS[: len(PERSON_WITH_PARTS) // 2], "not a readable XML"),  # truncated file
        ("<annotation><filename>a.jpg</filename></annotation>", "no <size>"),
        (PERSON_WITH_PARTS.replace("<xmax>200</xmax>", "<xmax>wide</xmax>"), "'wide'"),
        (PERSON_WITH_PARTS.replace("<name>chair</name>", ""), "no <name>"),
        ('<!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;</annotation>', "not a readable XML"),  # defusedxml refuses
    ],
)
def test_parse_errors_name_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=expected) as info:
        parse_voc_xml(path)
    assert str(path) in str(info.value)


def test_parse_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.xml"):
        parse_voc_xml(tmp_path / "nothere.xml")


def test_write_then_parse_round_trip(tmp_path: Path) -> None:
    ann = VocAnnotation(
        "x.jpg", 64, 48, (VocObject("cat", (1.0, 2.0, 30.0, 40.0)), VocObject("dog", (2.5, 3.0, 9.0, 10.0), True, True))
    )
    write_voc_xml(tmp_path / "x.xml", ann)
    assert parse_voc_xml(tmp_path / "x.xml") == ann
    first = (tmp_path / "x.xml").read_bytes()
    write_voc_xml(tmp_path / "x.xml", ann)
    assert (tmp_path / "x.xml").read_bytes() == first


def test_object_problem() -> None:
    names = ("cat", "dog")
    assert object_problem(VocObject("cat", (0, 0, 5, 5)), names) is None
    assert "unknown class name 'cow'" in object_problem(VocObject("cow", (0, 0, 5, 5)), names)
    assert "reversed" in object_problem(VocObject("dog", (9, 0, 5, 5)), names)
    assert "reversed" in object_problem(VocObject("dog", (0, 5, 5, 5)), names)


def test_split_ids_is_a_seeded_partition_independent_of_input_order() -> None:
    ids = [f"{i:04d}" for i in range(50)]
    train, val = split_ids(ids, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert sorted(train + val) == ids
    assert split_ids(list(reversed(ids)), 0.2, seed=3) == (train, val)
    assert split_ids(ids, 0.2, seed=4) != (train, val)
    assert split_ids(["a", "b"], 0.2, seed=0)[1] != []  # at least one val image
    with pytest.raises(ValueError, match="val_fraction"):
        split_ids(ids, 1.0)


def test_class_names_file(tmp_path: Path) -> None:
    assert read_class_names(tmp_path) is None
    write_class_names(tmp_path, ("a", "b"))
    assert read_class_names(tmp_path) == ("a", "b")
    (tmp_path / "classes.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="repeated"):
        read_class_names(tmp_path)
