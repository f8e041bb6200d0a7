"""Reference location coordinates, anchors and box deltas."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

STRIDES = {"p3": 8, "p4": 16, "p5": 32}


def test_location_coords_row_major_non_square(ref):
    coords = ref.anchors.get_fpn_location_coords({"p4": (2, 8, 3, 5)}, {"p4": 16})["p4"]
    assert coords.shape == (15, 2) and coords.dtype == torch.float32
    # Slow loop oracle: x varies fastest.
    expected = [[(x + 0.5) * 16, (y + 0.5) * 16] for y in range(3) for x in range(5)]
    assert coords.tolist() == expected


def test_location_coords_dtype_device_and_levels(ref):
    shapes = {"p3": (1, 4, 28, 28), "p4": (1, 4, 14, 14), "p5": (1, 4, 7, 7)}
    coords = ref.anchors.get_fpn_location_coords(shapes, STRIDES, dtype=torch.float64)
    assert {k: tuple(v.shape) for k, v in coords.items()} == {"p3": (784, 2), "p4": (196, 2), "p5": (49, 2)}
    assert all(v.dtype == torch.float64 for v in coords.values())


def test_anchor_sanity_values_from_course(ref):
    loc = ref.anchors.get_fpn_location_coords({"p5": (1, 3, 2, 2)}, {"p5": 32})
    anchors = ref.anchors.generate_fpn_anchors(loc, {"p5": 32}, 2, [0.5, 1.0, 2.0])["p5"]
    assert anchors.shape == (12, 4)
    torch.testing.assert_close(anchors[0], torch.tensor([-29.2548, -6.6274, 61.2548, 38.6274]), atol=1e-4, rtol=0)
    torch.testing.assert_close(anchors[1], torch.tensor([-16.0, -16.0, 48.0, 48.0]))


@pytest.mark.parametrize("ratios", [[0.5, 1.0, 2.0], [1.0], [3.0, 0.25]])
def test_anchor_geometry(ref, ratios):
    shapes = {"p3": (1, 1, 3, 4), "p4": (1, 1, 2, 1)}
    loc = ref.anchors.get_fpn_location_coords(shapes, STRIDES)
    anchors = ref.anchors.generate_fpn_anchors(loc, STRIDES, 8, ratios)
    for level, boxes in anchors.items():
        a = len(ratios)
        boxes = boxes.reshape(-1, a, 4)  # (H*W*A, 4) -> (H*W, A, 4): location-major
        w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        torch.testing.assert_close(w * h, torch.full_like(w, (8.0 * STRIDES[level]) ** 2))
        torch.testing.assert_close(h / w, torch.tensor(ratios).expand_as(w))
        centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (H*W, A, 2)
        torch.testing.assert_close(centres, loc[level][:, None, :].expand_as(centres))


SANITY_ANCHORS = torch.tensor([[20.0, 40, 80, 90], [10, 10, 50, 50], [120, 100, 200, 200]])
SANITY_GT = torch.tensor([[10.0, 15, 100, 115], [30, 20, 40, 30], [120, 100, 200, 200]])


def test_deltas_course_sanity_round_trip(ref):
    deltas = ref.deltas.rcnn_get_deltas_from_anchors(SANITY_ANCHORS, SANITY_GT)
    expected = torch.tensor(
        [[1 / 12, 0.0, math.log(1.5), math.log(2.0)], [0.125, -0.125, math.log(0.25), math.log(0.25)], [0, 0, 0, 0]]
    )
    torch.testing.assert_close(deltas, expected)
    back = ref.deltas.rcnn_apply_deltas_to_anchors(deltas, SANITY_ANCHORS)
    assert (back - SANITY_GT).abs().max() < 1e-6


def test_deltas_background_and_neutral_rows(ref):
    gt = torch.tensor([[-1.0, -1, -1, -1, -1], [-1e8] * 5, [10, 15, 100, 115, 3]])
    deltas = ref.deltas.rcnn_get_deltas_from_anchors(SANITY_ANCHORS, gt)
    assert (deltas[:2] == -1e8).all()
    assert torch.isfinite(deltas[2]).all() and (deltas[2] != -1e8).all()


def test_apply_deltas_clamps_and_does_not_modify_inputs(ref):
    deltas = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    d0, a0 = deltas.clone(), anchors.clone()
    out = ref.deltas.rcnn_apply_deltas_to_anchors(deltas, anchors)
    assert torch.equal(deltas, d0) and torch.equal(anchors, a0)
    torch.testing.assert_close(out, torch.tensor([[4 - 112.0, 4 - 112.0, 4 + 112.0, 4 + 112.0]]))


def test_deltas_reject_bad_shapes(ref):
    with pytest.raises(ValueError, match="gt_boxes"):
        ref.deltas.rcnn_get_deltas_from_anchors(SANITY_ANCHORS, SANITY_GT[:2])
    with pytest.raises(ValueError, match="anchors"):
        ref.deltas.rcnn_apply_deltas_to_anchors(torch.zeros(3, 4), torch.zeros(2, 4))


sizes = st.floats(min_value=1.0, max_value=400.0, width=32)
centres = st.floats(min_value=-200.0, max_value=600.0, width=32)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(centres, centres, sizes, sizes, centres, centres, sizes, sizes), min_size=1, max_size=8))
def test_delta_round_trip_property(ref, rows):
    t = torch.tensor(rows, dtype=torch.float64)
    anchors = torch.stack([t[:, 0], t[:, 1], t[:, 0] + t[:, 2], t[:, 1] + t[:, 3]], dim=1)
    # GT no more than 28x larger than its anchor, so the decode clamp never binds.
    gw = torch.minimum(t[:, 6], t[:, 2] * 27)
    gh = torch.minimum(t[:, 7], t[:, 3] * 27)
    gt = torch.stack([t[:, 4], t[:, 5], t[:, 4] + gw, t[:, 5] + gh], dim=1)
    deltas = ref.deltas.rcnn_get_deltas_from_anchors(anchors, gt)
    back = ref.deltas.rcnn_apply_deltas_to_anchors(deltas, anchors)
    torch.testing.assert_close(back, gt, rtol=1e-9, atol=1e-6)


def test_clip_boxes_to_image(ref):
    boxes = torch.tensor([[-5.0, -5, 300, 50], [10, 20, 30, 40]])
    out = ref.deltas.clip_boxes_to_image(boxes, (224, 200))
    assert out.tolist() == [[0.0, 0.0, 200.0, 50.0], [10.0, 20.0, 30.0, 40.0]]
