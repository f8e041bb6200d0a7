"""A synthetic VOC-layout dataset of coloured shapes on textured noise.

Used by the demo, the tests, CI and the autograder: it is small, quick to make
(16 images in well under a second), reproducible byte for byte, and easy
enough that a detector trained from random init overfits it in a few hundred
iterations. Each image holds ``min_objects..max_objects`` non-overlapping
rectangles, ellipses and triangles (classes :data:`SYNTHETIC_CLASSES`) whose
boxes are the tight bounding boxes of the drawn pixels, as XYXY pixel edges
(a shape covering columns 10..49 has ``x1 = 10, x2 = 50``). The XML files hold
the same numbers as the JSON, so building the JSON from the XML reproduces it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rcnn_kit.course import IMAGE_SIZE
from rcnn_kit.data.classes import SYNTHETIC_CLASSES
from rcnn_kit.data.datasets import CourseRecord, write_course_json
from rcnn_kit.data.voc import (
    ANNOTATIONS_DIR,
    DEFAULT_VAL_FRACTION,
    IMAGE_SETS_DIR,
    IMAGES_DIR,
    VocAnnotation,
    VocObject,
    split_ids,
    write_class_names,
    write_voc_xml,
)

#: Object side range as a fraction of the image side (40..120 px at 224 px).
OBJECT_SIDE_FRACTION = (40 / 224, 120 / 224)
#: Smallest image side that leaves room for objects of a few pixels.
MIN_IMAGE_SIZE = 32
#: Fixed JPEG settings: same arguments, same bytes.
JPEG_QUALITY = 92
JPEG_SUBSAMPLING = 0  # 4:4:4, keeps shape edges crisp
#: Background: a smooth random colour field (grid upsampled) in a muted range, plus pixel noise.
BACKGROUND_GRID = 6
BACKGROUND_RANGE = (50, 170)
NOISE_STD = 10.0
#: Gap kept between objects and from the image border, in pixels.
GAP_PX = 2
#: Placement attempts per object before it is left out.
PLACEMENT_TRIES = 200
#: Saturated object colours, far from the muted background.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 25),
    (25, 200, 40),
    (30, 60, 235),
    (245, 220, 20),
    (240, 30, 220),
    (20, 225, 230),
    (255, 140, 0),
    (250, 250, 250),
)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    low, high = BACKGROUND_RANGE
    grid = rng.integers(low, high, size=(BACKGROUND_GRID, BACKGROUND_GRID, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize((size, size), Image.Resampling.BICUBIC)


def _shape_mask(rng: np.random.Generator, size: int, cls: str, rect: tuple[int, int, int, int]) -> Image.Image:
    """Draw one shape filling ``rect`` (x1, y1, x2, y2 pixel edges) on a blank ``size x size`` mask."""
    x1, y1, x2, y2 = rect
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if cls == "rectangle":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=255)
    elif cls == "ellipse":
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=255)
    else:  # triangle: apex somewhere on the top edge, base along the bottom edge
        apex_x = int(rng.integers(x1, x2))
        draw.polygon([(apex_x, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=255)
    return mask


def _overlaps(rect: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    x1, y1, x2, y2 = rect
    return any(x1 < b[2] + GAP_PX and b[0] < x2 + GAP_PX and y1 < b[3] + GAP_PX and b[1] < y2 + GAP_PX for b in placed)


def _make_image(rng: np.random.Generator, size: int, num_objects: int) -> tuple[Image.Image, list[VocObject]]:
    image = _background(rng, size)
    low, high = (max(2, round(f * size)) for f in OBJECT_SIDE_FRACTION)
    placed: list[tuple[int, int, int, int]] = []
    objects: list[VocObject] = []
    for _ in range(num_objects):
        cls = SYNTHETIC_CLASSES[int(rng.integers(len(SYNTHETIC_CLASSES)))]
        color = PALETTE[int(rng.integers(len(PALETTE)))]
        for _try in range(PLACEMENT_TRIES):
            w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
            if w + 2 * GAP_PX > size or h + 2 * GAP_PX > size:
                continue
            x1 = int(rng.integers(GAP_PX, size - GAP_PX - w + 1))
            y1 = int(rng.integers(GAP_PX, size - GAP_PX - h + 1))
            rect = (x1, y1, x1 + w, y1 + h)
            if not _overlaps(rect, placed):
                break
        else:
            continue  # no room left for this object
        mask = _shape_mask(rng, size, cls, rect)
        tight = mask.getbbox()  # (left, top, right, bottom), right/bottom exclusive = XYXY pixel edges
        if tight is None:
            continue
        image.paste(color, (0, 0, size, size), mask)
        placed.append(rect)
        objects.append(VocObject(name=cls, box=tuple(float(v) for v in tight)))  # type: ignore[arg-type]
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, NOISE_STD, size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB"), objects


def make_synthetic_voc(
    out_dir: str | Path,
    num_images: int = 16,
    image_size: int = IMAGE_SIZE,
    seed: int = 0,
    min_objects: int = 1,
    max_objects: int = 3,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> Path:
    """Write a VOC-layout dataset of shapes to ``out_dir``.

    Files: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``,
    ``ImageSets/Main/{train,val,trainval}.txt``, ``classes.txt`` and the course
    JSON files ``train.json``/``val.json`` (image paths relative to ``out_dir``).
    Ids are ``000000``, ``000001``, ...; the train/val split is
    :func:`rcnn_kit.data.voc.split_ids` with ``seed``.

    Args:
        out_dir: target folder (created; existing files of the same names are overwritten).
        num_images: number of images, at least 1.
        image_size: side of the square images in pixels, at least 32.
        seed: seed of the numpy Generator that draws everything.
        min_objects: fewest objects per image, at least 1.
        max_objects: most objects per image.
        val_fraction: share of images in ``val``.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: an argument is out of range (the message names it).
    """
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images: expected an int >= 1, got {num_images!r}")
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size: expected an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(
            f"min_objects, max_objects: need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}"
        )
    out = Path(out_dir)
    for sub in (ANNOTATIONS_DIR, IMAGES_DIR, str(IMAGE_SETS_DIR)):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"{i:06d}" for i in range(num_images)]
    records: dict[str, CourseRecord] = {}
    for image_id in ids:
        num_objects = int(rng.integers(min_objects, max_objects + 1))
        image, objects = _make_image(rng, image_size, num_objects)
        if len(objects) < min_objects:
            raise ValueError(
                f"min_objects: only {len(objects)} of {num_objects} objects fit in image {image_id} "
                f"at image_size={image_size}; lower min_objects or raise image_size"
            )
        filename = f"{image_id}.jpg"
        image.save(out / IMAGES_DIR / filename, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
        write_voc_xml(
            out / ANNOTATIONS_DIR / f"{image_id}.xml",
            VocAnnotation(filename=filename, width=image_size, height=image_size, objects=tuple(objects)),
            folder="synthetic",
        )
        records[image_id] = (
            f"{IMAGES_DIR}/{filename}",
            [{"name": o.name, "xyxy": [int(v) for v in o.box]} for o in objects],
        )
    train, val = split_ids(ids, val_fraction, seed)
    for split, split_list in (("train", train), ("val", val), ("trainval", ids)):
        (out / IMAGE_SETS_DIR / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_list), encoding="utf-8")
        if split != "trainval":
            write_course_json(out / f"{split}.json", [records[i] for i in split_list])
    write_class_names(out, SYNTHETIC_CLASSES)
    return out
