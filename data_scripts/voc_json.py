"""Build the course's JSON files from VOC XML annotations.

Two routes:

- VOC2007 (:func:`prepare_voc2007`): ``train.json`` from ``ImageSets/Main/train.txt``
  and ``val.json`` from ``val.txt`` (``test.json`` from ``test.txt`` when asked),
  difficult boxes dropped, every listed image kept, counts checked against
  the known ones (:data:`VOC2007_EXPECTED`).
- VOC2012 and other VOC-style folders (:func:`prepare_seeded_split`): all of
  ``Annotations/``, images without usable objects left out and counted, a
  seeded 4:1 train/val split (:func:`rcnn_kit.data.voc.split_ids`).

Coordinates are copied from the XML unchanged ("raw VOC coordinates").

Bad input (a truncated XML, a listed image that is missing, a reversed box,
an unknown class name) is reported with the file name and counted. A bad box
is dropped and the build goes on. A bad *image* is never dropped silently:
the JSON is not written unless ``allow_dropped=True``, and then the report
says how many images were left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rcnn_kit.data.classes import VOC_CLASSES
from rcnn_kit.data.datasets import CourseRecord, write_course_json
from rcnn_kit.data.voc import (
    ANNOTATIONS_DIR,
    DEFAULT_VAL_FRACTION,
    IMAGES_DIR,
    AnnotationError,
    object_problem,
    parse_voc_xml,
    read_image_set,
    split_ids,
)

#: Known (images, non-difficult boxes) per VOC2007 split, checked when the JSON is built.
VOC2007_EXPECTED: dict[str, tuple[int, int]] = {"train": (2501, 6301), "val": (2510, 6307)}


class IncompleteDataError(ValueError):
    """Images had to be left out (or counts do not match); no JSON was written. Carries the report."""

    def __init__(self, message: str, report: BuildReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class BuildReport:
    """What a build saw: counts and one line per problem (``"<file>: <what>"``)."""

    images_listed: int = 0
    images_written: int = 0
    boxes_written: int = 0
    difficult_dropped: int = 0
    bad_boxes_dropped: int = 0
    bad_images_dropped: int = 0
    empty_images_left_out: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self, title: str) -> str:
        """Human-readable report: every problem, then the counts."""
        lines = [f"{title}:"] + [f"  problem: {p}" for p in self.problems]
        lines.append(
            f"  {self.images_written} images and {self.boxes_written} boxes written "
            f"(of {self.images_listed} images listed); {self.difficult_dropped} difficult boxes dropped"
        )
        if self.empty_images_left_out:
            lines.append(f"  {self.empty_images_left_out} images without objects left out")
        if self.problems:
            lines.append(
                f"  {len(self.problems)} problem(s): {self.bad_images_dropped} image(s) and "
                f"{self.bad_boxes_dropped} box(es) could not be used"
            )
        return "\n".join(lines)


def collect_records(
    root: str | Path,
    ids: Sequence[str],
    json_dir: str | Path,
    class_names: Sequence[str] = VOC_CLASSES,
    keep_difficult: bool = False,
    drop_empty: bool = False,
) -> tuple[dict[str, CourseRecord], BuildReport]:
    """Read the annotations of ``ids`` under ``root`` into course records.

    Args:
        root: VOC folder with ``Annotations/`` and ``JPEGImages/``.
        ids: image ids to read.
        json_dir: folder the JSON will be written to (image paths are made relative to it).
        class_names: the known class names.
        keep_difficult: keep boxes flagged difficult.
        drop_empty: leave out (and count) images with no usable box.

    Returns:
        ``(records, report)``: records keyed by id (bad and left-out images absent).
    """
    root, json_dir = Path(root), Path(json_dir)
    report = BuildReport(images_listed=len(ids))
    records: dict[str, CourseRecord] = {}
    for image_id in ids:
        xml_path = root / ANNOTATIONS_DIR / f"{image_id}.xml"
        try:
            annotation = parse_voc_xml(xml_path)
        except (FileNotFoundError, AnnotationError) as exc:
            report.problems.append(str(exc))
            report.bad_images_dropped += 1
            continue
        image_path = root / IMAGES_DIR / annotation.filename
        if not image_path.is_file():
            report.problems.append(f"{xml_path}: image listed but missing: {image_path}")
            report.bad_images_dropped += 1
            continue
        objects = []
        for obj in annotation.objects:
            if obj.difficult and not keep_difficult:
                report.difficult_dropped += 1
                continue
            problem = object_problem(obj, class_names)
            if problem is not None:
                report.problems.append(f"{xml_path}: {problem}; box dropped")
                report.bad_boxes_dropped += 1
                continue
            objects.append({"name": obj.name, "xyxy": [_plain(v) for v in obj.box]})
        if drop_empty and not objects:
            report.empty_images_left_out += 1
            continue
        records[image_id] = (Path(os.path.relpath(image_path, json_dir)).as_posix(), objects)
        report.boxes_written += len(objects)
    report.images_written = len(records)
    return records, report


def _plain(value: float) -> float | int:
    """Integer-valued coordinates as ints (VOC writes integers), others unchanged."""
    return int(value) if float(value).is_integer() else value


def _blocking_reasons(
    records: dict[str, CourseRecord], ids: Sequence[str], report: BuildReport, expected: tuple[int, int] | None
) -> list[str]:
    """Why the JSON of ``ids`` must not be written, each with the flag that allows it (empty when it may)."""
    chosen = [records[i] for i in ids if i in records]
    counts = (len(chosen), sum(len(objects) for _, objects in chosen))
    reasons = []
    if report.bad_images_dropped:
        reasons.append(
            f"{report.bad_images_dropped} image(s) could not be read (see the problems above; "
            "pass --allow-dropped to write the JSON without them)"
        )
    if expected is not None and counts != expected:
        reasons.append(
            f"counts {counts[0]} images / {counts[1]} boxes differ from the known {expected[0]} / {expected[1]} "
            "of the official VOC2007 (if your copy differs on purpose, pass --no-count-check)"
        )
    return reasons


def _refuse_if_blocked(
    records: dict[str, CourseRecord],
    ids: Sequence[str],
    out_path: Path,
    report: BuildReport,
    expected: tuple[int, int] | None,
    allow_dropped: bool,
) -> None:
    """Raise IncompleteDataError when the JSON of ``ids`` must not be written."""
    reasons = _blocking_reasons(records, ids, report, expected)
    if reasons and not allow_dropped:
        raise IncompleteDataError(f"{out_path} not written: {'; '.join(reasons)}", report)


def write_split(
    records: dict[str, CourseRecord],
    ids: Sequence[str],
    out_path: str | Path,
    report: BuildReport,
    expected: tuple[int, int] | None = None,
    allow_dropped: bool = False,
) -> Path:
    """Write the records of ``ids`` (those present) to ``out_path``, atomically.

    Args:
        records: records keyed by id (from :func:`collect_records`).
        ids: ids of this split, in output order.
        out_path: the JSON file.
        report: the report of these records; bad images in it block the write.
        expected: known ``(images, boxes)``; a mismatch blocks the write.
        allow_dropped: write anyway when images were dropped or counts differ.

    Raises:
        IncompleteDataError: images were dropped or the counts differ, and
            ``allow_dropped`` is False; nothing is written.
    """
    out_path = Path(out_path)
    _refuse_if_blocked(records, ids, out_path, report, expected, allow_dropped)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    write_course_json(tmp, [records[i] for i in ids if i in records])
    os.replace(tmp, out_path)
    return out_path


def prepare_voc2007(
    voc_root: str | Path,
    out_dir: str | Path | None = None,
    splits: Sequence[str] = ("train", "val"),
    check_counts: bool = True,
    allow_dropped: bool = False,
) -> dict[str, BuildReport]:
    """Write ``<split>.json`` for each split listed in ``voc_root/ImageSets/Main``.

    Args:
        voc_root: the ``VOCdevkit/VOC2007`` folder.
        out_dir: where the JSON files go (default ``voc_root``).
        splits: split names (``"test"`` needs the test tar).
        check_counts: compare with :data:`VOC2007_EXPECTED` (off for non-VOC data, e.g. tests).
        allow_dropped: see :func:`write_split`.

    Returns:
        One report per split.

    Raises:
        FileNotFoundError: a split list is missing.
        IncompleteDataError: see :func:`write_split`; raised before any file is written.
    """
    voc_root = Path(voc_root)
    out_dir = Path(out_dir) if out_dir is not None else voc_root
    collected = {}
    for split in splits:  # read every split first: either all JSON files are written or none
        ids = read_image_set(voc_root, split)
        collected[split] = (ids, *collect_records(voc_root, ids, out_dir, VOC_CLASSES))
    for split, (ids, records, report) in collected.items():
        expected = VOC2007_EXPECTED.get(split) if check_counts else None
        _refuse_if_blocked(records, ids, out_dir / f"{split}.json", report, expected, allow_dropped)
    for split, (ids, records, report) in collected.items():
        expected = VOC2007_EXPECTED.get(split) if check_counts else None
        write_split(records, ids, out_dir / f"{split}.json", report, expected, allow_dropped)
    return {split: report for split, (_, _, report) in collected.items()}


def prepare_seeded_split(
    root: str | Path,
    out_dir: str | Path | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    class_names: Sequence[str] = VOC_CLASSES,
    allow_dropped: bool = False,
) -> BuildReport:
    """The VOC2012 route: every annotation in ``root``, images without objects left out, seeded split.

    Args:
        root: folder with ``Annotations/`` and ``JPEGImages/``.
        out_dir: where ``train.json`` and ``val.json`` go (default ``root``).
        val_fraction: share of the kept images in val (0.2 gives 4:1).
        seed: seed of the split.
        class_names: the known class names.
        allow_dropped: see :func:`write_split`.

    Returns:
        The report over all images.

    Raises:
        FileNotFoundError: ``root`` has no ``Annotations/`` or ``JPEGImages/`` folder.
        IncompleteDataError: see :func:`write_split`.
    """
    root = Path(root)
    for sub in (ANNOTATIONS_DIR, IMAGES_DIR):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"root: no {sub}/ folder in {root}")
    out_dir = Path(out_dir) if out_dir is not None else root
    ids = sorted(p.stem for p in (root / ANNOTATIONS_DIR).glob("*.xml"))
    records, report = collect_records(root, ids, out_dir, class_names, drop_empty=True)
    train, val = split_ids(sorted(records), val_fraction, seed)
    for split, split_ids_ in (("train", train), ("val", val)):
        write_split(records, split_ids_, out_dir / f"{split}.json", report, None, allow_dropped)
    return report
