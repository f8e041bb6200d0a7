"""Detection datasets that feed the training loop, the notebook and the autograder.

Every item is ``(image_path, image, gt_boxes)``:

- ``image_path``: ``str``, the image file that was read;
- ``image``: ``Tensor[3, S, S]`` float32, ImageNet-normalised (``S = image_size``);
- ``gt_boxes``: ``Tensor[max_boxes, 5]`` float32, rows ``(x1, y1, x2, y2, class)``
  with XYXY pixel boxes in the ``S x S`` crop and ``class`` in ``0..C-1``,
  followed by padding rows of -1.

All items have the same shapes, so PyTorch's default collate makes batches
``(list[str], Tensor[B, 3, S, S], Tensor[B, max_boxes, 5])`` (see :func:`make_loader`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rcnn_kit.data.classes import VOC_CLASSES
from rcnn_kit.data.transforms import normalize, pad_gt, resize_and_crop
from rcnn_kit.course import IMAGE_SIZE, MAX_GT_BOXES
from rcnn_kit.data.voc import (
    ANNOTATIONS_DIR,
    DEFAULT_VAL_FRACTION,
    IMAGE_SETS_DIR,
    IMAGES_DIR,
    object_problem,
    parse_voc_xml,
    read_image_set,
    split_ids,
)

#: Course defaults (rcnn_kit.course): square input side, GT rows per image.
DEFAULT_IMAGE_SIZE = IMAGE_SIZE
DEFAULT_MAX_BOXES = MAX_GT_BOXES


@dataclass(frozen=True)
class Record:
    """One image of a dataset, before preprocessing.

    Attributes:
        image_path: the image file.
        boxes: XYXY boxes in original image pixels, one tuple per object.
        labels: class index of each box.
    """

    image_path: Path
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]


class _DetectionDataset(Dataset):
    """Shared item logic; subclasses fill ``self._records``."""

    def __init__(self, image_size: int, max_boxes: int, class_names: Sequence[str]) -> None:
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
        if not isinstance(max_boxes, int) or max_boxes <= 0:
            raise ValueError(f"max_boxes: expected a positive int, got {max_boxes!r}")
        if len(class_names) == 0 or len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names: expected distinct names, got {list(class_names)}")
        self.image_size = image_size
        self.max_boxes = max_boxes
        self.class_names: tuple[str, ...] = tuple(class_names)
        self._records: list[Record] = []

    def _warn_if_too_many_boxes(self, source: Path) -> None:
        """Warn once about images whose boxes exceed ``max_boxes`` (the first ``max_boxes`` are kept)."""
        over = [r for r in self._records if len(r.labels) > self.max_boxes]
        if over:
            warnings.warn(
                f"{source}: {len(over)} image(s) have more than max_boxes={self.max_boxes} boxes "
                f"(e.g. {over[0].image_path.name} with {len(over[0].labels)}); "
                f"only the first {self.max_boxes} boxes left after the crop are kept",
                stacklevel=3,
            )

    @property
    def records(self) -> tuple[Record, ...]:
        """All images with their boxes in original pixels (what ``__getitem__`` preprocesses)."""
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> tuple[str, Tensor, Tensor]:
        record = self._records[index]
        image = load_rgb(record.image_path)
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4), also for N = 0
        labels = torch.tensor(record.labels, dtype=torch.int64)
        pixels, boxes, keep = resize_and_crop(image, boxes, self.image_size)
        boxes, labels = boxes[keep][: self.max_boxes], labels[keep][: self.max_boxes]
        return str(record.image_path), normalize(pixels), pad_gt(boxes, labels, self.max_boxes)


def load_rgb(path: Path) -> Image.Image:
    """Open and fully decode an image as RGB; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() decodes the whole file, so truncation shows here
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc


class VOCJsonDataset(_DetectionDataset):
    """The course's JSON format: ``[[image_path, [{"name": str, "xyxy": [x1, y1, x2, y2]}, ...]], ...]``.

    Args:
        json_path: the JSON file.
        image_root: folder the image paths are relative to (default: the JSON's folder).
        image_size: side ``S`` of the square model input.
        max_boxes: rows of ``gt_boxes``; extra boxes are dropped with one warning.
        class_names: names defining the class indices (default: the 20 VOC classes).

    Raises:
        FileNotFoundError: ``json_path`` or ``image_root`` does not exist.
        ValueError: the JSON is not valid (message has the position), a record
            has the wrong shape (message has its index), a box is empty or
            reversed, or a class name is unknown.
    """

    def __init__(
        self,
        json_path: str | Path,
        image_root: str | Path | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        max_boxes: int = DEFAULT_MAX_BOXES,
        class_names: Sequence[str] = VOC_CLASSES,
    ) -> None:
        super().__init__(image_size, max_boxes, class_names)
        json_path = Path(json_path)
        if not json_path.is_file():
            raise FileNotFoundError(f"json_path: file not found: {json_path}")
        self.json_path = json_path
        self.image_root = Path(image_root) if image_root is not None else json_path.parent
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image_root: folder not found: {self.image_root}")
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{json_path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from exc
        if not isinstance(data, list):
            raise ValueError(f"{json_path}: expected a JSON list of records, got {type(data).__name__}")
        self._records = [self._parse_record(item, i) for i, item in enumerate(data)]
        self._warn_if_too_many_boxes(json_path)

    def _parse_record(self, item: Any, index: int) -> Record:
        where = f"{self.json_path}: record {index}"
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list)):
            raise ValueError(f"{where}: expected [image_path, [objects...]], got {str(item)[:120]}")
        boxes, labels = [], []
        for j, obj in enumerate(item[1]):
            xyxy = obj.get("xyxy") if isinstance(obj, dict) else None
            if not (
                isinstance(obj, dict)
                and isinstance(obj.get("name"), str)
                and isinstance(xyxy, list)
                and len(xyxy) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xyxy)
            ):
                raise ValueError(
                    f"{where}, object {j}: expected {{'name': str, 'xyxy': [x1, y1, x2, y2]}}, got {obj!r}"
                )
            if obj["name"] not in self.class_names:
                raise ValueError(f"{where}: unknown class name {obj['name']!r} (known: {', '.join(self.class_names)})")
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            if not (x2 > x1 and y2 > y1):
                raise ValueError(f"{where}, object {j}: box {xyxy} is empty or reversed (need x2 > x1, y2 > y1)")
            boxes.append((x1, y1, x2, y2))
            labels.append(self.class_names.index(obj["name"]))
        return Record(self.image_root / item[0], tuple(boxes), tuple(labels))


class VOCXmlDataset(_DetectionDataset):
    """Raw VOC folders: ``root/Annotations/*.xml`` and ``root/JPEGImages/*``.

    The images of ``split`` come from ``root/ImageSets/Main/<split>.txt`` when it
    exists; otherwise from a seeded split of all annotation files
    (:func:`rcnn_kit.data.voc.split_ids`) for ``"train"``/``"val"``, or all of
    them for ``"trainval"``. Box coordinates are read as written in the XML.

    Args:
        root: the VOC folder.
        split: ``"train"``, ``"val"``, ``"trainval"`` or any list in ImageSets/Main.
        image_size: side ``S`` of the square model input.
        max_boxes: rows of ``gt_boxes``; extra boxes are dropped with one warning.
        keep_difficult: keep objects flagged ``difficult``.
        class_names: names defining the class indices (default: the 20 VOC classes).
        val_fraction: share of images in val for the seeded split.
        seed: seed of the split.

    Raises:
        FileNotFoundError: ``root``, its ``Annotations/`` or a listed annotation is missing.
        ValueError: unknown split without a list, an unreadable XML file, an
            unknown class name or an empty/reversed box (messages name the file).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = DEFAULT_IMAGE_SIZE,
        max_boxes: int = DEFAULT_MAX_BOXES,
        keep_difficult: bool = False,
        class_names: Sequence[str] = VOC_CLASSES,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0,
    ) -> None:
        super().__init__(image_size, max_boxes, class_names)
        self.root = Path(root)
        annotations = self.root / ANNOTATIONS_DIR
        if not annotations.is_dir():
            raise FileNotFoundError(f"root: no {ANNOTATIONS_DIR}/ folder in {self.root}")
        self.split = split
        if (self.root / IMAGE_SETS_DIR / f"{split}.txt").is_file():
            ids = read_image_set(self.root, split)
        else:
            all_ids = sorted(p.stem for p in annotations.glob("*.xml"))
            if split == "trainval":
                ids = all_ids
            elif split in ("train", "val"):
                train, val = split_ids(all_ids, val_fraction, seed)
                ids = train if split == "train" else val
            else:
                raise ValueError(
                    f"split: {split!r} has no list {self.root / IMAGE_SETS_DIR / (split + '.txt')}; "
                    "without a list only 'train', 'val' and 'trainval' are possible"
                )
        self.ids: list[str] = ids
        self._records = [self._load(image_id, keep_difficult) for image_id in ids]
        self._warn_if_too_many_boxes(annotations)

    def _load(self, image_id: str, keep_difficult: bool) -> Record:
        xml_path = self.root / ANNOTATIONS_DIR / f"{image_id}.xml"
        annotation = parse_voc_xml(xml_path)
        boxes, labels = [], []
        for obj in annotation.objects:
            if obj.difficult and not keep_difficult:
                continue
            problem = object_problem(obj, self.class_names)
            if problem is not None:
                raise ValueError(f"{xml_path}: {problem}")
            boxes.append(obj.box)
            labels.append(self.class_names.index(obj.name))
        return Record(self.root / IMAGES_DIR / annotation.filename, tuple(boxes), tuple(labels))


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int | None = None
) -> DataLoader:
    """A DataLoader giving ``(list[str], Tensor[B, 3, S, S], Tensor[B, max_boxes, 5])`` batches.

    Args:
        dataset: one of this module's datasets.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        num_workers: loader worker processes.
        seed: when given, the shuffling order is reproducible.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator)


#: One course-JSON record: ``(image path relative to the JSON's folder, [{"name": ..., "xyxy": [...]}, ...])``.
CourseRecord = tuple[str, list[dict[str, Any]]]


def write_course_json(path: str | Path, records: Sequence[CourseRecord]) -> Path:
    """Write records in the course's JSON format, one record a line (stable bytes, easy diffs).

    Args:
        path: the JSON file to write (its folder must exist).
        records: ``(image_path, objects)`` pairs; ``objects`` are ``{"name": str, "xyxy": [x1, y1, x2, y2]}``.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    lines = [json.dumps([image_path, list(objects)]) for image_path, objects in records]
    path.write_text("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n", encoding="utf-8")
    return path
