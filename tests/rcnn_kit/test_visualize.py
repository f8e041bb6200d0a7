"""Detection pictures: size, colours, GT drawing, PNG output without a display."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from rcnn_kit.data import IMAGENET_MEAN
from rcnn_kit.visualize import GT_COLOR, class_colors, draw_detections, save_detections

NAMES = ("rectangle", "ellipse", "triangle")
H, W = 48, 80


def _grey(value: float = 0.0) -> torch.Tensor:
    return torch.full((3, H, W), value)


def test_picture_has_image_size_and_class_colours_on_box_edges():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [50.0, 15.0, 70.0, 45.0]])
    picture = draw_detections(_grey(0.0), boxes, torch.tensor([0, 2]), torch.tensor([0.9, 0.6]), NAMES,
                              normalized=False)
    assert picture.size == (W, H) and picture.mode == "RGB"
    colors = class_colors(len(NAMES))
    assert picture.getpixel((10, 30)) == colors[0]  # left edge of box 0
    assert picture.getpixel((70, 30)) == colors[2]  # right edge of box 1
    assert picture.getpixel((20, 30)) == (0, 0, 0)  # inside box 0, untouched


def test_colours_are_distinct_per_class():
    for count in (3, 10, 20):
        assert len(set(class_colors(count))) == count


def test_gt_boxes_drawn_white_and_padding_skipped():
    gt = torch.tensor([[5.0, 5.0, 25.0, 25.0, 1.0], [-1.0, -1.0, -1.0, -1.0, -1.0]])
    picture = draw_detections(_grey(0.0), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0), NAMES,
                              gt_boxes=gt, normalized=False)
    assert picture.getpixel((5, 15)) == GT_COLOR
    assert picture.getpixel((0, 0)) == (0, 0, 0)  # the padding row drew nothing at (-1, -1)


def test_normalised_image_is_denormalised():
    picture = draw_detections(_grey(0.0), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None, NAMES,
                              normalized=True)
    assert picture.getpixel((0, 0)) == tuple(round(m * 255) for m in IMAGENET_MEAN)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="image"):
        draw_detections(torch.zeros(H, W), torch.zeros(0, 4), torch.zeros(0), None, NAMES)
    with pytest.raises(ValueError, match="classes"):
        draw_detections(_grey(), torch.zeros(1, 4), torch.tensor([3]), torch.tensor([0.5]), NAMES)
    with pytest.raises(ValueError, match="boxes, classes, scores"):
        draw_detections(_grey(), torch.zeros(2, 4), torch.tensor([0]), torch.tensor([0.5]), NAMES)


def test_save_writes_png_without_a_display(tmp_path):
    # A fresh interpreter with no DISPLAY and no matplotlib backend setting must still write the file.
    script = (
        "import sys, torch\n"
        "from rcnn_kit.visualize import save_detections\n"
        "save_detections(sys.argv[1], torch.rand(3, 48, 80), torch.tensor([[1., 2., 30., 40.]]),"
        " torch.tensor([1]), torch.tensor([0.5]), ['a', 'b'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")}
    out = tmp_path / "pics" / "det.png"
    subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=120)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (80, 48)


def test_save_returns_the_path(tmp_path):
    path = save_detections(tmp_path / "x.png", _grey(0.5), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                           torch.zeros(0), NAMES)
    assert path.is_file()
