"""Draw detections (and optionally ground truth) on an image with PIL; no display needed.

Colours come from matplotlib's qualitative ``tab10``/``tab20`` palettes, one per
class; ground-truth boxes are drawn thin and white underneath the detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from rcnn_kit.data.transforms import denormalize

#: Line widths in pixels.
DETECTION_LINE_WIDTH = 2
GT_LINE_WIDTH = 1
#: Colour of ground-truth boxes (RGB).
GT_COLOR = (255, 255, 255)
#: Font size of the labels, in pixels.
LABEL_FONT_SIZE = 11
#: Gap in pixels between a label and the top edge of its box.
LABEL_PADDING = 2
#: Class counts up to which the 10-colour palette is used (tab20 beyond it).
_SMALL_PALETTE_SIZE = 10


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """One distinct RGB colour per class (tab10 for up to 10 classes, tab20 for up to 20, then cycling)."""
    if num_classes <= 0:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    cmap = colormaps["tab10" if num_classes <= _SMALL_PALETTE_SIZE else "tab20"]
    colors = []
    for i in range(num_classes):
        r, g, b, _ = cmap(i % cmap.N)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def _to_pil(image: torch.Tensor, normalized: bool | None) -> Image.Image:
    """``Tensor[3, H, W]`` (ImageNet-normalised or in [0, 1]) -> RGB PIL image."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image: expected Tensor[3, H, W], got {shape}")
    image = image.detach().float().cpu()
    if normalized is None:  # values outside [0, 1] can only come from normalisation
        normalized = bool(image.min() < 0 or image.max() > 1)
    pixels = denormalize(image) if normalized else image.clamp(0, 1)
    array = (pixels * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
    return Image.fromarray(array)  # uint8 (H, W, 3) is read as RGB


def _check_boxes(name: str, boxes: torch.Tensor) -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] < 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{name}: expected Tensor[N, 4] XYXY boxes, got {shape}")
    return boxes.detach().float().cpu()


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    classes: torch.Tensor,
    scores: torch.Tensor | None,
    class_names: Sequence[str],
    gt_boxes: torch.Tensor | None = None,
    *,
    normalized: bool | None = None,
) -> Image.Image:
    """Draw boxes with ``"<class> <score>"`` labels on a copy of ``image``.

    Args:
        image: ``Tensor[3, H, W]``, ImageNet-normalised or RGB in ``[0, 1]``.
        boxes: ``Tensor[N, 4]`` XYXY pixel boxes.
        classes: ``Tensor[N]`` class indices in ``0..C-1``.
        scores: ``Tensor[N]`` scores shown after the class name, or None (e.g. to draw GT).
        class_names: names of the C classes (fixes the colours).
        gt_boxes: optional ``Tensor[M, 4]`` or ``Tensor[M, 5]`` XYXY ground truth; rows
            whose class column is -1 (padding) are skipped. Drawn thin and white.
        normalized: whether ``image`` is ImageNet-normalised; None guesses from the
            value range (anything outside ``[0, 1]`` means normalised).

    Returns:
        An RGB PIL image of size ``W x H``.

    Raises:
        ValueError: shapes disagree or a class index is outside ``0..C-1``.
    """
    canvas = _to_pil(image, normalized)
    boxes = _check_boxes("boxes", boxes)
    classes = classes.detach().long().cpu().reshape(-1)
    if classes.shape[0] != boxes.shape[0] or (scores is not None and scores.numel() != boxes.shape[0]):
        raise ValueError(
            f"boxes, classes, scores: expected N entries each, got {boxes.shape[0]}, {classes.shape[0]}, "
            f"{None if scores is None else scores.numel()}"
        )
    if classes.numel() and (classes.min() < 0 or classes.max() >= len(class_names)):
        raise ValueError(f"classes: indices must lie in 0..{len(class_names) - 1}, got {classes.tolist()}")
    colors = class_colors(len(class_names))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)

    if gt_boxes is not None:
        gt = _check_boxes("gt_boxes", gt_boxes)
        if gt.shape[1] >= 5:
            gt = gt[gt[:, 4] >= 0]  # drop padding rows (class -1)
        for x1, y1, x2, y2 in gt[:, :4].tolist():
            draw.rectangle((x1, y1, x2, y2), outline=GT_COLOR, width=GT_LINE_WIDTH)

    score_list = scores.detach().float().cpu().reshape(-1).tolist() if scores is not None else [None] * len(classes)
    for (x1, y1, x2, y2), cls, score in zip(boxes[:, :4].tolist(), classes.tolist(), score_list):
        color = colors[cls]
        draw.rectangle((x1, y1, x2, y2), outline=color, width=DETECTION_LINE_WIDTH)
        label = class_names[cls] if score is None else f"{class_names[cls]} {score:.2f}"
        _, top, _, bottom = draw.textbbox((x1, y1), label, font=font)
        above = y1 - (bottom - top) - LABEL_PADDING
        text_y = above if above >= 0 else y1  # above the box, or inside its top edge at the image border
        bg = draw.textbbox((x1, text_y), label, font=font)
        draw.rectangle(bg, fill=color)
        draw.text((x1, text_y), label, fill=(0, 0, 0), font=font)
    return canvas


def save_detections(
    path: str | Path,
    image: torch.Tensor,
    boxes: torch.Tensor,
    classes: torch.Tensor,
    scores: torch.Tensor | None,
    class_names: Sequence[str],
    gt_boxes: torch.Tensor | None = None,
    *,
    normalized: bool | None = None,
) -> Path:
    """:func:`draw_detections` and write the result as a PNG at ``path`` (folders created).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = draw_detections(image, boxes, classes, scores, class_names, gt_boxes, normalized=normalized)
    picture.save(path, format="PNG")
    return path
