"""Detection datasets that feed the training loop, the notebook and the autograder.

Every item is ``(image_path, image, gt_boxes)``:

- ``image_path``: ``str``, the image file that was read;
- ``image``: ``Tensor[3, S, S]`` float32, ImageNet-normalised (``S = image_size``);
- ``gt_boxes``: ``Tensor[max_boxes, 5]`` float32, rows ``(x1, y1, x2, y2, class)``
  with XYXY pixel boxes in the ``S x S`` crop and ``class`` in ``0..C-1``,
  followed by padding rows of -1.

All items have the same shapes, so PyTorch's default collate makes batches
``(list[str], Tensor[B, 3, S, S], Tensor[B, max_boxes, 5])`` (see :func:`make_loader`).

PASCAL VOC's "difficult" boxes are read and kept with their flag. The training items
leave them out unless ``keep_difficult=True`` (as the course did); evaluation gets every
box with its flag from :meth:`eval_ground_truth <_DetectionDataset.eval_ground_truth>`,
which :func:`rcnn_kit.engine.predict` uses, so that VOC's metric can ignore them.
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
from rcnn_kit.data.transforms import normalize, pad_gt, resize_and_crop, transform_boxes
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
        boxes: XYXY boxes in original image pixels, one tuple per object (difficult ones included).
        labels: class index of each box.
        difficult: VOC's difficult flag of each box; ``()`` means none is difficult.
    """

    image_path: Path
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]
    difficult: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"Record {self.image_path}: {len(self.boxes)} boxes but {len(self.labels)} labels")
        if not self.difficult:
            object.__setattr__(self, "difficult", (False,) * len(self.labels))  # frozen dataclass
        elif len(self.difficult) != len(self.labels):
            raise ValueError(
                f"Record {self.image_path}: {len(self.difficult)} difficult flags for {len(self.labels)} boxes"
            )


class _DetectionDataset(Dataset):
    """Shared item logic; subclasses fill ``self._records``."""

    def __init__(self, image_size: int, max_boxes: int, class_names: Sequence[str], keep_difficult: bool) -> None:
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
        if not isinstance(max_boxes, int) or max_boxes <= 0:
            raise ValueError(f"max_boxes: expected a positive int, got {max_boxes!r}")
        if len(class_names) == 0 or len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names: expected distinct names, got {list(class_names)}")
        self.image_size = image_size
        self.max_boxes = max_boxes
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.keep_difficult = keep_difficult
        self._records: list[Record] = []

    def _warn_if_too_many_boxes(self, source: Path) -> None:
        """Warn once about images whose boxes exceed ``max_boxes`` (the first ``max_boxes`` are kept)."""
        counts = [sum(self.keep_difficult or not d for d in r.difficult) for r in self._records]
        over = [(r, n) for r, n in zip(self._records, counts, strict=True) if n > self.max_boxes]
        if over:
            warnings.warn(
                f"{source}: {len(over)} image(s) have more than max_boxes={self.max_boxes} boxes "
                f"(e.g. {over[0][0].image_path.name} with {over[0][1]}); "
                f"only the first {self.max_boxes} boxes left after the crop are kept",
                stacklevel=3,
            )

    @property
    def records(self) -> tuple[Record, ...]:
        """All images with all their boxes in original pixels, difficult ones flagged."""
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def _record_tensors(self, index: int) -> tuple[Record, Tensor, Tensor, Tensor]:
        """``(record, boxes Tensor[N, 4] float32, labels Tensor[N] int64, difficult Tensor[N] bool)``."""
        record = self._records[index]
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4), also for N = 0
        return record, boxes, torch.tensor(record.labels, dtype=torch.int64), torch.tensor(record.difficult, dtype=torch.bool)

    def __getitem__(self, index: int) -> tuple[str, Tensor, Tensor]:
        record, boxes, labels, difficult = self._record_tensors(index)
        pixels, boxes, keep = resize_and_crop(load_rgb(record.image_path), boxes, self.image_size)
        if not self.keep_difficult:
            keep &= ~difficult
        boxes, labels = boxes[keep][: self.max_boxes], labels[keep][: self.max_boxes]
        return str(record.image_path), normalize(pixels), pad_gt(boxes, labels, self.max_boxes)

    def eval_ground_truth(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """Every box of item ``index`` for evaluation, in the item's ``S x S`` crop, difficult ones flagged.

        The same geometry as ``__getitem__`` (only the image header is read), but difficult
        boxes are kept whatever ``keep_difficult`` says and ``max_boxes`` does not cut the list;
        boxes left empty by the crop are dropped.

        Returns:
            ``(boxes Tensor[M, 4] float32 XYXY, classes Tensor[M] int64, difficult Tensor[M] bool)``.
        """
        record, boxes, labels, difficult = self._record_tensors(index)
        width, height = image_size_of(record.image_path)
        boxes, keep = transform_boxes(boxes, height, width, self.image_size)
        return boxes[keep], labels[keep], difficult[keep]


def image_size_of(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (no decoding); errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc


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

    An object may also carry ``"difficult": true`` (VOC's flag; absent means false).

    Args:
        json_path: the JSON file.
        image_root: folder the image paths are relative to (default: the JSON's folder).
        image_size: side ``S`` of the square model input.
        max_boxes: rows of ``gt_boxes``; extra boxes are dropped with one warning.
        class_names: names defining the class indices (default: the 20 VOC classes).
        keep_difficult: also train on difficult boxes (evaluation always sees them, flagged).

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
        keep_difficult: bool = False,
    ) -> None:
        super().__init__(image_size, max_boxes, class_names, keep_difficult)
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
        boxes, labels, difficult = [], [], []
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
            if not isinstance(obj.get("difficult", False), bool):
                raise ValueError(f"{where}, object {j}: 'difficult' must be true or false, got {obj['difficult']!r}")
            if obj["name"] not in self.class_names:
                raise ValueError(f"{where}: unknown class name {obj['name']!r} (known: {', '.join(self.class_names)})")
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            if not (x2 > x1 and y2 > y1):
                raise ValueError(f"{where}, object {j}: box {xyxy} is empty or reversed (need x2 > x1, y2 > y1)")
            boxes.append((x1, y1, x2, y2))
            labels.append(self.class_names.index(obj["name"]))
            difficult.append(obj.get("difficult", False))
        return Record(self.image_root / item[0], tuple(boxes), tuple(labels), tuple(difficult))


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
        keep_difficult: also train on objects flagged ``difficult`` (evaluation always sees
            them, flagged; see :meth:`eval_ground_truth`).
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
        super().__init__(image_size, max_boxes, class_names, keep_difficult)
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
        self._records = [self._load(image_id) for image_id in ids]
        self._warn_if_too_many_boxes(annotations)

    def _load(self, image_id: str) -> Record:
        xml_path = self.root / ANNOTATIONS_DIR / f"{image_id}.xml"
        annotation = parse_voc_xml(xml_path)
        for obj in annotation.objects:  # difficult boxes too: evaluation uses them
            problem = object_problem(obj, self.class_names)
            if problem is not None:
                raise ValueError(f"{xml_path}: {problem}")
        return Record(
            self.root / IMAGES_DIR / annotation.filename,
            tuple(obj.box for obj in annotation.objects),
            tuple(self.class_names.index(obj.name) for obj in annotation.objects),
            tuple(obj.difficult for obj in annotation.objects),
        )


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


#: One course-JSON record: ``(image path relative to the JSON's folder, [{"name": ..., "xyxy": [...]}, ...])``;
#: an object may add ``"difficult": true``.
CourseRecord = tuple[str, list[dict[str, Any]]]


def write_course_json(path: str | Path, records: Sequence[CourseRecord]) -> Path:
    """Write records in the course's JSON format, one record a line (stable bytes, easy diffs).

    Args:
        path: the JSON file to write (its folder must exist).
        records: ``(image_path, objects)`` pairs; ``objects`` are ``{"name": str, "xyxy": [x1, y1, x2, y2]}``,
            optionally with ``"difficult": true``.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    lines = [json.dumps([image_path, list(objects)]) for image_path, objects in records]
    path.write_text("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n", encoding="utf-8")
    return path
