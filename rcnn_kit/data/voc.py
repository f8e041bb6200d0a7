"""The PASCAL VOC folder layout and its XML annotations.

One place that reads and writes VOC XML, used by the runtime dataset
(:class:`rcnn_kit.data.datasets.VOCXmlDataset`), the synthetic generator and
the data scripts (``rcnn-kit data ...``).

Layout of a VOC-style root folder::

    root/Annotations/<id>.xml        one annotation per image
    root/JPEGImages/<id>.jpg         the images
    root/ImageSets/Main/<split>.txt  optional image-id lists (train, val, trainval, test)
    root/classes.txt                 optional class names, one a line (our own addition)

Coordinates are kept exactly as written in the XML ("raw VOC coordinates"):
the course reads them as XYXY pixel values without VOC's 1-based shift.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
IMAGE_SETS_DIR = Path("ImageSets") / "Main"
CLASSES_FILE = "classes.txt"

#: Fraction of the images that a seeded split puts in ``val`` (a 4:1 train/val split).
DEFAULT_VAL_FRACTION = 0.2


class AnnotationError(ValueError):
    """An annotation file (or one record in it) cannot be used; the message names the file."""


@dataclass(frozen=True)
class VocObject:
    """One annotated object.

    Attributes:
        name: class name as written in the file.
        box: ``(x1, y1, x2, y2)`` raw coordinates from ``<bndbox>``.
        difficult: VOC's ``difficult`` flag (left out of training by default; ignored, not
            counted, by the VOC evaluation).
        truncated: VOC's ``truncated`` flag (informative only).
    """

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class VocAnnotation:
    """The content of one VOC XML file that the kit uses.

    Attributes:
        filename: image file name inside ``JPEGImages/``.
        width: image width in pixels, from ``<size>``.
        height: image height in pixels, from ``<size>``.
        objects: the objects in file order (``<part>`` sub-boxes are not objects).
    """

    filename: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


def _child_text(element: ET.Element, tag: str, path: Path) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{path}: <{element.tag}> has no <{tag}> value")
    return child.text.strip()


def _number(element: ET.Element, tag: str, path: Path) -> float:
    text = _child_text(element, tag, path)
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{path}: <{tag}> is not a number: {text!r}") from None


def _flag(element: ET.Element, tag: str, path: Path) -> bool:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return False
    return _number(element, tag, path) != 0


def parse_voc_xml(path: str | Path) -> VocAnnotation:
    """Read one VOC annotation file with defusedxml (no entity expansion, no DTDs).

    Only the direct ``<bndbox>`` of each ``<object>`` is read, so the ``<part>``
    boxes (head, hand, foot of a person) never become objects.

    Args:
        path: the XML file.

    Returns:
        The annotation, coordinates unchanged.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AnnotationError: the file is not well-formed XML (e.g. truncated) or lacks
            a required element; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        root = SafeET.parse(path).getroot()
    except (ET.ParseError, DefusedXmlException) as exc:
        raise AnnotationError(f"{path}: not a readable XML annotation ({exc})") from exc
    filename = root.findtext("filename", default="").strip() or path.stem + ".jpg"
    size = root.find("size")
    if size is None:
        raise AnnotationError(f"{path}: no <size> element")
    width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    objects = []
    for obj in root.findall("object"):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError(f"{path}: an <object> has no <bndbox>")
        box = tuple(_number(bndbox, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(
            VocObject(
                name=_child_text(obj, "name", path),
                box=box,  # type: ignore[arg-type]  # always four values
                difficult=_flag(obj, "difficult", path),
                truncated=_flag(obj, "truncated", path),
            )
        )
    return VocAnnotation(filename=filename, width=width, height=height, objects=tuple(objects))


def object_problem(obj: VocObject, class_names: Sequence[str]) -> str | None:
    """Why ``obj`` cannot become a GT row, or None when it can.

    Args:
        obj: the object.
        class_names: the known class names.

    Returns:
        ``"unknown class name 'x'"`` or ``"box with x2 < x1: ..."`` style text, or None.
    """
    if obj.name not in class_names:
        return f"unknown class name {obj.name!r} (known: {', '.join(class_names)})"
    x1, y1, x2, y2 = obj.box
    if not x2 > x1 or not y2 > y1:
        return f"box {list(obj.box)} of {obj.name!r} is empty or reversed (need x2 > x1 and y2 > y1)"
    return None


def write_voc_xml(path: str | Path, annotation: VocAnnotation, folder: str = "VOC") -> None:
    """Write ``annotation`` as a VOC XML file (deterministic bytes for the same input).

    Integer-valued coordinates are written without a decimal point, as VOC does.
    """

    def add(parent: ET.Element, tag: str, text: object) -> ET.Element:
        child = ET.SubElement(parent, tag)
        child.text = str(text)
        return child

    def fmt(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else repr(float(value))

    root = ET.Element("annotation")
    add(root, "folder", folder)
    add(root, "filename", annotation.filename)
    size = ET.SubElement(root, "size")
    add(size, "width", annotation.width)
    add(size, "height", annotation.height)
    add(size, "depth", 3)
    add(root, "segmented", 0)
    for obj in annotation.objects:
        element = ET.SubElement(root, "object")
        add(element, "name", obj.name)
        add(element, "pose", "Unspecified")
        add(element, "truncated", int(obj.truncated))
        add(element, "difficult", int(obj.difficult))
        bndbox = ET.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box, strict=True):
            add(bndbox, tag, fmt(value))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=False)


def read_image_set(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``root/ImageSets/Main/<split>.txt`` (first token of each line).

    Raises:
        FileNotFoundError: the list does not exist.
    """
    path = Path(root) / IMAGE_SETS_DIR / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"image-set list not found: {path}")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_ids(
    ids: Sequence[str], val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic train/val split: sort the ids, permute with a seeded numpy Generator.

    ``round(len(ids) * val_fraction)`` ids (at least one when there are two or
    more ids and the fraction is positive) go to val. The result depends only
    on the set of ids, the fraction and the seed, never on the input order.

    Args:
        ids: image ids (duplicates are removed).
        val_fraction: share of ids for val, in ``[0, 1)``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(train_ids, val_ids)``, each sorted.

    Raises:
        ValueError: ``val_fraction`` is outside ``[0, 1)``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    unique = sorted(set(ids))
    n_val = round(len(unique) * val_fraction)
    if val_fraction > 0 and len(unique) >= 2:
        n_val = max(n_val, 1)
    order = np.random.default_rng(seed).permutation(len(unique))
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(unique[i] for i in order[n_val:])
    return train, val


def read_class_names(root: str | Path) -> tuple[str, ...] | None:
    """Class names from ``root/classes.txt`` (one a line), or None when there is no such file.

    Raises:
        ValueError: the file is empty or repeats a name.
    """
    path = Path(root) / CLASSES_FILE
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not names:
        raise ValueError(f"{path}: no class names in the file")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: repeated class names in {list(names)}")
    return names


def write_class_names(root: str | Path, class_names: Sequence[str]) -> Path:
    """Write ``root/classes.txt``; returns its path."""
    path = Path(root) / CLASSES_FILE
    path.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
    return path
