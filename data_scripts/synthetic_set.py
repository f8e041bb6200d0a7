"""``rcnn-kit data synthetic``: the synthetic shapes set, in a folder the command owns.

The synthetic set uses VOC's own file names (``JPEGImages/000001.jpg``,
``Annotations/000001.xml``, ``train.json``), so writing it into a real VOC folder
would silently overwrite real files. The command therefore writes a marker,
:data:`MARKER_NAME`, before anything else, and writes only into a folder that is
new, empty, or has that marker. On its own folder it first removes what an earlier
run wrote (:data:`OWNED_NAMES`; other files are left alone), so the same arguments
give the same files, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from rcnn_kit.course import rmtree
from rcnn_kit.data.synthetic import make_synthetic_voc
from rcnn_kit.data.voc import ANNOTATIONS_DIR, CLASSES_FILE, DEFAULT_VAL_FRACTION, IMAGE_SETS_DIR, IMAGES_DIR

#: Marker file of a folder written by ``rcnn-kit data synthetic``.
MARKER_NAME = ".rcnn-kit-synthetic.json"
#: What :func:`rcnn_kit.data.make_synthetic_voc` writes at the top of its folder.
OWNED_NAMES: tuple[str, ...] = (
    ANNOTATIONS_DIR,
    IMAGES_DIR,
    IMAGE_SETS_DIR.parts[0],
    CLASSES_FILE,
    "train.json",
    "val.json",
)


def check_writable_here(out: Path) -> bool:
    """Whether ``out`` may receive the synthetic set; True when it holds an earlier one.

    Raises:
        ValueError: ``out`` is a file, or a non-empty folder without :data:`MARKER_NAME`.
    """
    if not out.exists():
        return False
    if not out.is_dir():
        raise ValueError(f"--out: {out} is a file, expected a folder")
    if (out / MARKER_NAME).is_file():
        return True
    if any(out.iterdir()):
        raise ValueError(
            f"--out: {out} is not empty and was not written by `rcnn-kit data synthetic` (no {MARKER_NAME}); "
            "the synthetic set uses VOC's file names and would overwrite files there; choose a new or empty folder"
        )
    return False


def write_synthetic_set(
    out: str | Path,
    *,
    num_images: int,
    image_size: int,
    seed: int,
    min_objects: int,
    max_objects: int,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> Path:
    """Write the synthetic set into ``out`` (see :func:`rcnn_kit.data.make_synthetic_voc` for the arguments).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: ``out`` is not the command's to write (see :func:`check_writable_here`),
            or an argument is out of range.
    """
    out = Path(out)
    if check_writable_here(out):
        for name in OWNED_NAMES:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    arguments = {
        "num_images": num_images,
        "image_size": image_size,
        "seed": seed,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "val_fraction": val_fraction,
    }
    marker = out / MARKER_NAME
    marker.write_text(json.dumps({"complete": False, "arguments": arguments}, indent=2) + "\n", encoding="utf-8")
    make_synthetic_voc(out, **arguments)
    marker.write_text(json.dumps({"complete": True, "arguments": arguments}, indent=2) + "\n", encoding="utf-8")
    return out
