"""The overfit subset: a few training images, resized, with annotations and a sha256 manifest.

Small enough (target under :data:`MAX_SUBSET_BYTES`) to ship inside the
autograder bundle, where the hidden checks train a student's detector on it.

Sources: a course JSON (:func:`make_overfit_subset`, e.g. VOC2007 ``train.json`` or
the synthetic set's) or a VOC-layout folder with XML annotations
(:func:`make_overfit_subset_from_voc`, e.g. ``VOCdevkit/VOC2007`` or an
instructor's own subset). :func:`load_overfit_subset` reads a subset back as
tensors after checking it against its manifest.

Layout of the output folder::

    JPEGImages/<id>.jpg   images already resized and centre-cropped to S x S
    train.json            course JSON, boxes in the S x S frame
    classes.txt           class names
    manifest.json         see below

``manifest.json`` (format :data:`MANIFEST_FORMAT`): ``format``, ``source``
(``{"kind": "course-json" | "voc-folder", "path": ..., "split": ...}``),
``image_size`` (S), ``class_names``, ``selection`` (the rule or ``"explicit"``),
``ids`` (sorted), ``total_bytes`` and ``files`` (``{name: {"sha256", "bytes"}}`` for
every file above but the manifest itself).

Selection: either explicit ids, or the seeded rule (:class:`SelectionRule`):
keep the training images whose boxes all survive the crop, number at most
``max_objects`` and have both sides at least ``min_box_side`` pixels at
``S x S``; sort their ids; pick ``count`` of them with
``numpy.random.default_rng(seed).choice`` (no repeats). The ids chosen are
written to the manifest. The VOC2007 subset is ``DEFAULT_RULE`` applied to
``train.json``; we cannot list its ids here without the data, so the rule is
what is fixed and the manifest records the outcome.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from data_scripts.download import file_hash
from rcnn_kit.course import IMAGE_SIZE
from rcnn_kit.data.classes import VOC_CLASSES
from rcnn_kit.data.datasets import CourseRecord, Record, VOCJsonDataset, VOCXmlDataset, load_rgb, write_course_json
from rcnn_kit.data.transforms import resize_and_crop, transform_boxes
from rcnn_kit.data.voc import CLASSES_FILE, IMAGES_DIR, read_class_names, write_class_names

MANIFEST_NAME = "manifest.json"
#: Manifest format written; 2 added ``class_names`` and the ``source`` record.
MANIFEST_FORMAT = 2
#: Manifest formats :func:`verify_manifest` reads.
READABLE_FORMATS = (1, 2)
#: The subset's course JSON.
SUBSET_JSON = "train.json"
#: Size budget of the whole subset (the autograder bundle must stay small).
MAX_SUBSET_BYTES = 5 * 1024 * 1024
#: JPEG quality of the stored images (fixed: same input, same bytes).
JPEG_QUALITY = 90
#: Decimals kept for box coordinates in the S x S frame.
BOX_DECIMALS = 2


@dataclass(frozen=True)
class SelectionRule:
    """The seeded selection rule (see the module docstring)."""

    count: int = 8
    seed: int = 0
    max_objects: int = 3
    min_box_side: float = 32.0


#: The rule used for the VOC2007 subset and by default.
DEFAULT_RULE = SelectionRule()


def _image_id(record: Record) -> str:
    return record.image_path.stem


def _qualifies(record: Record, image_size: int, rule: SelectionRule) -> bool:
    """True when all of the record's boxes survive the crop, few and large enough."""
    if not 1 <= len(record.labels) <= rule.max_objects:
        return False
    with Image.open(record.image_path) as image:  # reads the header only
        width, height = image.size
    boxes, keep = transform_boxes(torch.tensor(record.boxes), height, width, image_size)
    sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return bool(keep.all()) and bool((sides >= rule.min_box_side).all())


def select_ids(records: Sequence[Record], image_size: int, rule: SelectionRule) -> list[str]:
    """Apply the seeded rule; returns the chosen ids, sorted.

    Raises:
        ValueError: fewer qualifying images than ``rule.count``.
    """
    candidates = sorted(_image_id(r) for r in records if _qualifies(r, image_size, rule))
    if len(candidates) < rule.count:
        raise ValueError(
            f"count: only {len(candidates)} images qualify under {rule} at image_size={image_size}, "
            f"{rule.count} asked; lower --count/--min-box-side or raise --max-objects"
        )
    picked = np.random.default_rng(rule.seed).choice(len(candidates), size=rule.count, replace=False)
    return sorted(candidates[int(i)] for i in picked)


def sha256_of(path: Path) -> str:
    """sha256 hex digest of a file."""
    return file_hash(path, "sha256")


def make_overfit_subset(
    source_json: str | Path,
    out_dir: str | Path,
    *,
    image_root: str | Path | None = None,
    ids: Sequence[str] | None = None,
    rule: SelectionRule = DEFAULT_RULE,
    image_size: int = IMAGE_SIZE,
    class_names: Sequence[str] | None = None,
    max_bytes: int = MAX_SUBSET_BYTES,
) -> dict[str, Any]:
    """Write the overfit subset of a course JSON to ``out_dir``.

    Args:
        source_json: a course JSON (e.g. VOC2007 ``train.json`` or a synthetic ``train.json``).
        out_dir: output folder; written as a whole (a previous subset there is replaced).
        image_root: folder the source's image paths are relative to (default: its folder).
        ids: explicit image ids (file stems); when None, ``rule`` picks them.
        rule: the seeded selection rule.
        image_size: side ``S`` the images are stored at.
        class_names: class names (default: the source folder's ``classes.txt``, else VOC's).
        max_bytes: size budget of the written files.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).

    Raises:
        ValueError: unknown or repeated ids, too few qualifying images, the
            subset is larger than ``max_bytes`` (nothing is written then), or
            ``out_dir`` holds something other than a previous subset.
    """
    source_json = Path(source_json)
    if class_names is None:
        class_names = read_class_names(source_json.parent) or VOC_CLASSES
    dataset = VOCJsonDataset(source_json, image_root, image_size=image_size, class_names=class_names)
    source = {"kind": "course-json", "path": source_json.as_posix(), "split": None}
    return _make_subset(dataset.records, source, out_dir, ids, rule, image_size, class_names, max_bytes)


def make_overfit_subset_from_voc(
    voc_root: str | Path,
    out_dir: str | Path,
    *,
    split: str = "train",
    ids: Sequence[str] | None = None,
    rule: SelectionRule = DEFAULT_RULE,
    image_size: int = IMAGE_SIZE,
    class_names: Sequence[str] | None = None,
    max_bytes: int = MAX_SUBSET_BYTES,
) -> dict[str, Any]:
    """Write the overfit subset of a VOC-layout folder (XML annotations) to ``out_dir``.

    The images of ``split`` are those of ``ImageSets/Main/<split>.txt``, or the seeded
    split of all annotations when there is no list (:class:`rcnn_kit.data.VOCXmlDataset`);
    boxes flagged ``difficult`` are left out, as in training.

    Args:
        voc_root: folder with ``Annotations/`` and ``JPEGImages/`` (e.g. ``VOCdevkit/VOC2007``).
        out_dir, ids, rule, image_size, max_bytes: as in :func:`make_overfit_subset`.
        split: the image set to pick from.
        class_names: class names (default: ``voc_root/classes.txt``, else the 20 VOC classes).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).

    Raises:
        FileNotFoundError: ``voc_root`` has no ``Annotations/``, or a listed annotation is missing.
        ValueError: as :func:`make_overfit_subset`, or an annotation names an unknown class
            or holds an empty box (the message names the file).
    """
    voc_root = Path(voc_root)
    if class_names is None:
        class_names = read_class_names(voc_root) or VOC_CLASSES
    dataset = VOCXmlDataset(voc_root, split, image_size=image_size, class_names=class_names)
    source = {"kind": "voc-folder", "path": voc_root.as_posix(), "split": split}
    return _make_subset(dataset.records, source, out_dir, ids, rule, image_size, class_names, max_bytes)


def _make_subset(
    records: Sequence[Record],
    source: dict[str, Any],
    out_dir: str | Path,
    ids: Sequence[str] | None,
    rule: SelectionRule,
    image_size: int,
    class_names: Sequence[str],
    max_bytes: int,
) -> dict[str, Any]:
    """Select, write into a staging folder, check the budget, then move it to ``out_dir``."""
    by_id: dict[str, Record] = {}
    for record in records:
        if _image_id(record) in by_id:
            raise ValueError(f"{source['path']}: two images share the id {_image_id(record)!r}")
        by_id[_image_id(record)] = record
    if ids is not None:
        unknown = [i for i in ids if i not in by_id]
        if unknown or len(set(ids)) != len(ids) or not ids:
            raise ValueError(f"ids: expected distinct ids of {source['path']}, got {list(ids)} (unknown: {unknown})")
        chosen, selection = sorted(ids), {"rule": "explicit"}
    else:
        chosen, selection = select_ids(records, image_size, rule), {"rule": "seeded", **asdict(rule)}
    out = Path(out_dir)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files = _write_subset(staging, [by_id[i] for i in chosen], image_size, class_names)
        total = sum(entry["bytes"] for entry in files.values())
        if total > max_bytes:
            raise ValueError(
                f"max_bytes: the subset would be {total} bytes, over the limit of {max_bytes}; "
                "choose fewer images or a smaller image_size (nothing written)"
            )
        manifest = {
            "format": MANIFEST_FORMAT,
            "source": source,
            "image_size": image_size,
            "class_names": list(class_names),
            "selection": selection,
            "ids": chosen,
            "total_bytes": total,
            "files": files,
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def _check_replaceable(out: Path) -> None:
    """``out`` may be (re)written: absent, empty, or a previous subset (it has a manifest)."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST_NAME).is_file())):
        raise ValueError(
            f"out_dir: {out} exists and is not an overfit subset (no {MANIFEST_NAME}); choose another folder"
        )


def _write_subset(
    folder: Path, records: Sequence[Record], image_size: int, class_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Write images, ``train.json`` and ``classes.txt`` into ``folder``; returns their sha256 and sizes."""
    (folder / IMAGES_DIR).mkdir()
    course: list[CourseRecord] = []
    for record in records:
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4), also for N = 0
        pixels, boxes, keep = resize_and_crop(load_rgb(record.image_path), boxes, image_size)
        relative = f"{IMAGES_DIR}/{_image_id(record)}.jpg"
        TF.to_pil_image(pixels).save(folder / relative, format="JPEG", quality=JPEG_QUALITY)
        objects = [
            {"name": class_names[label], "xyxy": [round(float(v), BOX_DECIMALS) for v in box]}
            for box, label, kept in zip(boxes.tolist(), record.labels, keep.tolist(), strict=True)
            if kept
        ]
        course.append((relative, objects))
    written = [
        write_course_json(folder / SUBSET_JSON, course).relative_to(folder).as_posix(),
        write_class_names(folder, class_names).relative_to(folder).as_posix(),
        *(relative for relative, _ in course),
    ]
    return {
        name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size} for name in sorted(written)
    }


def verify_manifest(subset_dir: str | Path) -> dict[str, Any]:
    """Check every file listed in ``subset_dir/manifest.json`` against its sha256 and size.

    Returns:
        The manifest.

    Raises:
        FileNotFoundError: there is no manifest.
        ValueError: the manifest is unreadable, or files are missing or changed
            (all of them are listed in the message).
    """
    subset_dir = Path(subset_dir)
    path = subset_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {subset_dir}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        version = manifest["format"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable manifest ({exc})") from exc
    if version not in READABLE_FORMATS:
        raise ValueError(f"{path}: manifest format {version!r}, expected one of {READABLE_FORMATS}")
    bad = []
    for name, entry in files.items():
        file = subset_dir / name
        if not file.is_file():
            bad.append(f"{name}: missing")
        elif file.stat().st_size != entry["bytes"] or sha256_of(file) != entry["sha256"]:
            bad.append(f"{name}: content differs from the manifest")
    if bad:
        raise ValueError(f"{subset_dir}: {len(bad)} file(s) do not match {MANIFEST_NAME}:\n  " + "\n  ".join(bad))
    return manifest


def load_overfit_subset(subset_dir: str | Path) -> tuple[Tensor, Tensor, list[str]]:
    """The subset in ``subset_dir`` as tensors, after :func:`verify_manifest`.

    Every file read (``train.json``, ``classes.txt``, each image) must be listed in the
    manifest with a matching sha256; the images are the manifest's ``ids``, in that order.

    Args:
        subset_dir: a folder written by :func:`make_overfit_subset` or
            :func:`make_overfit_subset_from_voc`.

    Returns:
        ``(images, gt, class_names)``: ``images`` ``Tensor[N, 3, S, S]`` float32,
        ImageNet-normalised (``S`` is the manifest's ``image_size``); ``gt``
        ``Tensor[N, MAX_GT_BOXES, 5]`` float32, rows ``(x1, y1, x2, y2, class)`` with
        XYXY pixel boxes in the ``S x S`` image and ``class`` in ``0..C-1``, then
        padding rows of -1; ``class_names`` the ``C`` names, in class-index order.

    Raises:
        FileNotFoundError: no manifest.
        ValueError: a file is missing, changed or not listed in the manifest, or the
            subset's files disagree with the manifest (ids, class names).
    """
    subset_dir = Path(subset_dir)
    manifest = verify_manifest(subset_dir)
    where = subset_dir / MANIFEST_NAME
    class_names = read_class_names(subset_dir)
    if class_names is None:
        raise ValueError(f"{where}: the subset has no {CLASSES_FILE}")
    if "class_names" in manifest and list(manifest["class_names"]) != list(class_names):
        raise ValueError(f"{where}: class_names {manifest['class_names']} differ from {CLASSES_FILE}: {list(class_names)}")
    dataset = VOCJsonDataset(subset_dir / SUBSET_JSON, image_size=manifest["image_size"], class_names=class_names)
    read = {SUBSET_JSON, CLASSES_FILE} | {r.image_path.relative_to(subset_dir).as_posix() for r in dataset.records}
    unlisted = sorted(read - set(manifest["files"]))
    if unlisted:
        raise ValueError(f"{where}: files used by the subset are not in the manifest: {unlisted}")
    ids = [_image_id(r) for r in dataset.records]
    if ids != manifest["ids"]:
        raise ValueError(f"{where}: ids {manifest['ids']} differ from the images of {SUBSET_JSON}: {ids}")
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([image for _, image, _ in items])  # N x (3, S, S) -> (N, 3, S, S)
    gt = torch.stack([boxes for _, _, boxes in items])  # N x (MAX_GT_BOXES, 5) -> (N, MAX_GT_BOXES, 5)
    return images, gt, list(class_names)
