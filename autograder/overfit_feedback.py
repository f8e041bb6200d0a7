"""Feedback of the overfit smoke test: the two pictures and the Markdown text shown to the student.

Everything here is drawn in the grader from the validated numbers of an
:class:`autograder.overfit_check.OverfitRun` (losses, detections) and the grader's own copy of the
training images: nothing the sandboxed child writes is read back. The Markdown embeds small
thumbnails as data URIs (PNG or JPEG, checked by signature); the full-size PNGs are attached
as files by the check.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.overfit_check import OverfitReport, OverfitRun
from autograder.overfit_data import TrainingSet
from rcnn_kit.engine import plot_loss_history
from rcnn_kit.visualize import save_detections

#: Detections drawn on the feedback picture: at most this many, scoring at least this much.
PICTURE_MAX_DETECTIONS = 10
PICTURE_MIN_SCORE = 0.3
#: Largest thumbnail embedded in the Markdown feedback (bytes). Two of them in base64 (4/3 larger)
#: plus the text stay under the 20 000 characters results.py keeps of one test's output; the
#: full-size PNGs are attached as files.
THUMBNAIL_MAX_BYTES = 7_000
#: Thumbnail encoding: longest side to start from, shrink factor per try, PNG palette, JPEG qualities.
THUMBNAIL_MAX_SIDE = 480
THUMBNAIL_SHRINK = 0.8
THUMBNAIL_PNG_COLORS = 16
THUMBNAIL_JPEG_QUALITIES = (75, 60)
#: File names of the feedback pictures.
LOSS_PICTURE = "overfit_loss.png"
DETECTIONS_PICTURE = "overfit_detections.png"
#: Eight-byte signature every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Signatures of the picture formats an embedded thumbnail may have.
IMAGE_SIGNATURES = {"image/png": PNG_SIGNATURE, "image/jpeg": b"\xff\xd8\xff"}


def draw_pictures(run: OverfitRun, data: TrainingSet, out_dir: str | Path) -> dict[str, Path]:
    """Draw the loss curve and the detections on training image 0 as PNG files.

    Args:
        run: the validated run.
        data: the training set (image 0 and its GT are drawn).
        out_dir: folder for the files (created).

    Returns:
        ``{file name: path}`` for :data:`LOSS_PICTURE` and :data:`DETECTIONS_PICTURE`.
    """
    out_dir = Path(out_dir)
    loss_path = plot_loss_history(run.history, out_dir / LOSS_PICTURE)
    boxes, classes, scores = run.detections[0]
    shown = (scores >= PICTURE_MIN_SCORE).nonzero().squeeze(1)[:PICTURE_MAX_DETECTIONS]
    order = scores[shown].argsort(descending=True)
    shown = shown[order]
    det_path = save_detections(
        out_dir / DETECTIONS_PICTURE,
        data.images[0],
        boxes[shown],
        classes[shown],
        scores[shown],
        data.class_names,
        gt_boxes=data.gt_boxes[0],
        normalized=True,
    )
    return {LOSS_PICTURE: loss_path, DETECTIONS_PICTURE: det_path}


def image_data_uri(data: bytes, max_bytes: int = THUMBNAIL_MAX_BYTES) -> str | None:
    """``data:image/png;base64,...`` (or ``image/jpeg``) for a picture of at most ``max_bytes``, else None.

    Raises:
        ValueError: ``data`` is neither a PNG nor a JPEG file (checked by signature).
    """
    mime = next((m for m, signature in IMAGE_SIGNATURES.items() if data.startswith(signature)), None)
    if mime is None:
        raise ValueError(f"data: not a PNG or JPEG file (starts with {data[:8]!r})")
    if len(data) > max_bytes:
        return None
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def thumbnail(path: Path, max_bytes: int = THUMBNAIL_MAX_BYTES, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A small encoding of our own picture at ``path`` that fits ``max_bytes`` if any does.

    At each size (starting at ``max_side``, then shrinking by :data:`THUMBNAIL_SHRINK`) it tries a
    16-colour PNG (crisp for plots) and JPEGs (smaller for noisy images) and returns the first that
    fits; below 64 pixels it returns the smallest tried, which the caller then leaves out.
    """
    from PIL import Image

    with Image.open(path) as image:
        picture = image.convert("RGB")
    scale = min(1.0, max_side / max(picture.size))
    smallest = b""
    while True:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        resized = picture.resize(size, Image.Resampling.LANCZOS) if size != picture.size else picture
        for encode in (_palette_png, *(lambda im, q=q: _jpeg(im, q) for q in THUMBNAIL_JPEG_QUALITIES)):
            data = encode(resized)
            if len(data) <= max_bytes:
                return data
            smallest = data if not smallest or len(data) < len(smallest) else smallest
        if max(size) <= 64:
            return smallest
        scale *= THUMBNAIL_SHRINK


def _palette_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.quantize(colors=THUMBNAIL_PNG_COLORS).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg(image: Any, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def feedback_markdown(report: OverfitReport, pictures: Mapping[str, Path]) -> str:
    """Student-facing Markdown: the summary, per-class AP, and the two pictures as small thumbnails."""
    lines = [report.summary(), ""]
    per_class = ", ".join(f"{name} {'n/a' if ap is None else f'{ap:.2f}'}" for name, ap in report.per_class_ap.items())
    lines.append(f"Per-class AP@0.5: {per_class}. Recall at IoU 0.5: {report.recall_50:.2f}; "
                 f"{report.num_detections} detections on {report.num_images} training images.")
    captions = {LOSS_PICTURE: "Training losses", DETECTIONS_PICTURE: "Detections on training image 0 (white: ground truth)"}
    for name, path in pictures.items():
        uri = image_data_uri(thumbnail(path))
        if uri is not None:
            lines += ["", f"![{captions.get(name, name)}]({uri})"]
    return "\n".join(lines) + "\n"
