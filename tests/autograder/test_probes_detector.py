"""The RoI-feature replay of the FasterRCNN probes (autograder/sandboxed/probes_detector.py).

The corpus (tests/autograder/test_corpus.py) checks the probes end to end against the reference
and buggy heads; these tests pin the lookup itself.
"""

from __future__ import annotations

import pytest
import torch

from autograder.sandboxed.probes import ProbeError
from autograder.sandboxed.probes_detector import ROI_TABLE_PREFIX, replay_roi_features

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
IMAGES = torch.tensor([0, 1, 1])
LEVELS = torch.tensor([0, 2, 1])
FEATS = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4)  # (K, D) one distinct row per box


def lookup():  # noqa: ANN201 - the probe's callable
    names = {"boxes": BOXES, "image_ids": IMAGES, "level_ids": LEVELS, "feats": FEATS}
    return replay_roi_features({f"{ROI_TABLE_PREFIX}{k}": v for k, v in names.items()})


def test_rows_follow_the_requested_boxes_images_and_levels() -> None:
    # Box 0 and box 2 have the same coordinates: image and level tell them apart.
    order = torch.tensor([2, 0, 1, 0])
    out = lookup()({}, BOXES[order] + 1e-6, IMAGES[order], LEVELS[order])
    torch.testing.assert_close(out, FEATS[order], rtol=0, atol=0)
    assert lookup()({}, BOXES[:0], IMAGES[:0], LEVELS[:0]).shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "images", "levels", "message"),
    [(BOXES[:1] + 0.5, IMAGES[:1], LEVELS[:1], "not a proposal or GT box"),
     (BOXES[:1], IMAGES[:1], LEVELS[1:2], "asked for box 0"),
     (BOXES[0], IMAGES[:1], LEVELS[:1], "Tensor\\[P, 4\\]")],
)
def test_unknown_boxes_and_bad_shapes_are_student_errors(boxes, images, levels, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        lookup()({}, boxes, images, levels)
