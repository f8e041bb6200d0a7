"""Reference iou and nms against independent oracles (torchvision.ops and slow loops)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import ops


def random_boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    """Tensor[n, 4] valid XYXY boxes inside [0, size + 50]."""
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * 50 + 1
    return torch.cat([xy, xy + wh], dim=1)


def slow_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, (ax1, ay1, ax2, ay2) in enumerate(a.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(b.tolist()):
            iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            ih = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = iw * ih
            union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def slow_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        if all(slow_iou(boxes[i : i + 1], boxes[k : k + 1])[0, 0] <= thresh for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("m,n", [(7, 11), (1, 1), (30, 3)])
def test_iou_matches_torchvision(ref, seed, m, n):
    g = torch.Generator().manual_seed(seed)
    a, b = random_boxes(m, g), random_boxes(n, g)
    torch.testing.assert_close(ref.iou.iou(a, b), ops.box_iou(a, b), rtol=1e-5, atol=1e-6)


def test_iou_empty_and_degenerate(ref):
    empty = torch.zeros(0, 4)
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 5, 5], [10, 0, 20, 10]])
    assert ref.iou.iou(empty, boxes).shape == (0, 3)
    assert ref.iou.iou(boxes, empty).shape == (3, 0)
    out = ref.iou.iou(boxes, boxes)
    assert torch.isfinite(out).all()
    assert out[1, 1] == 0  # zero-area box: zero union, IoU 0 not NaN
    assert out[0, 2] == 0  # touching boxes
    torch.testing.assert_close(out, slow_iou(boxes, boxes).float())


def test_iou_course_sanity_values(ref):
    anchors = torch.tensor([[20.0, 40, 80, 90], [10, 10, 50, 50], [120, 100, 200, 200]])
    gt = torch.tensor([[10.0, 15, 100, 115], [30, 20, 40, 30], [120, 100, 200, 200]])
    expected = torch.tensor([[0.3333, 0.0, 0.0], [0.1522, 0.0625, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(ref.iou.iou(anchors, gt), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("bad", [torch.zeros(3, 5), torch.zeros(4), torch.zeros(2, 3, 4)])
def test_iou_rejects_bad_shapes(ref, bad):
    with pytest.raises(ValueError, match="boxes1"):
        ref.iou.iou(bad, torch.zeros(2, 4))


coords = st.floats(min_value=-500, max_value=500, allow_nan=False, width=32)


@st.composite
def box_sets(draw, max_n=6):
    n = draw(st.integers(0, max_n))
    rows = []
    for _ in range(n):
        x1, y1 = draw(coords), draw(coords)
        w, h = draw(st.floats(0, 300, width=32)), draw(st.floats(0, 300, width=32))
        rows.append([x1, y1, x1 + w, y1 + h])
    return torch.tensor(rows, dtype=torch.float32).reshape(n, 4)


@settings(max_examples=60, deadline=None)
@given(box_sets(), box_sets())
def test_iou_properties(ref, a, b):
    ab = ref.iou.iou(a, b)
    assert ab.shape == (len(a), len(b))
    assert torch.isfinite(ab).all()
    assert (ab >= 0).all() and (ab <= 1 + 1e-6).all()
    torch.testing.assert_close(ab, ref.iou.iou(b, a).T)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thresh", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision(ref, seed, thresh):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(300, g, size=60)  # dense: many overlaps
    scores = torch.rand(300, generator=g)
    keep = ref.nms.nms(boxes, scores, thresh)
    assert keep.dtype == torch.int64
    torch.testing.assert_close(keep, ops.nms(boxes, scores, thresh))


def test_nms_matches_slow_loop_with_ties(ref):
    g = torch.Generator().manual_seed(7)
    boxes = random_boxes(40, g, size=40)
    scores = torch.randint(0, 4, (40,), generator=g).float()  # many ties: input order breaks them
    assert ref.nms.nms(boxes, scores, 0.5).tolist() == slow_nms(boxes, scores, 0.5)


def test_nms_many_exact_ties_keep_input_order(ref):
    # Equal scores everywhere, exact duplicates (IoU 1) and zero-area boxes (IoU 0 even
    # with themselves): greedy visits tied boxes in input order.
    g = torch.Generator().manual_seed(11)
    boxes = random_boxes(30, g, size=30)
    boxes = torch.cat([boxes, boxes[:10], torch.tensor([[5.0, 5, 5, 5]] * 3)])  # (43, 4)
    scores = torch.ones(len(boxes))
    keep = ref.nms.nms(boxes, scores, 0.5)
    assert keep.tolist() == slow_nms(boxes, scores, 0.5)
    assert {40, 41, 42} <= set(keep.tolist())  # zero-area boxes never overlap anything
    assert not set(range(30, 40)) & set(keep.tolist())  # a duplicate loses to its earlier twin


def all_pairs_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> list[int]:
    """Not NMS: drop a box that overlaps *any* higher-scoring box, kept or not."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    overlaps = slow_iou(boxes, boxes) > thresh
    return [i for pos, i in enumerate(order) if not any(overlaps[j, i] for j in order[:pos])]


def chain_boxes(n: int, step: float = 4.0, side: float = 10.0) -> torch.Tensor:
    """Tensor[n, 4]: boxes on a line, each shifted by ``step``; neighbours IoU 0.43, next-but-one 0.11."""
    x1 = torch.arange(n, dtype=torch.float32) * step
    return torch.stack([x1, torch.zeros(n), x1 + side, torch.full((n,), side)], dim=1)


def test_nms_chain_is_greedy_not_all_pairs(ref):
    # A > B > C with A~B and B~C overlapping but not A~C: greedy keeps A and C (B, the
    # only box overlapping C, is suppressed); suppressing by every higher box keeps A only.
    boxes = chain_boxes(3)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert ref.nms.nms(boxes, scores, 0.3).tolist() == slow_nms(boxes, scores, 0.3) == [0, 2]
    assert all_pairs_nms(boxes, scores, 0.3) == [0]


@pytest.mark.parametrize("seed", range(3))
def test_nms_long_chain_matches_greedy_oracle(ref, seed):
    # A 60-box chain: decreasing scores keep every other box (the greedy answer settles one
    # box at a time along the chain); shuffled scores give irregular answers.
    boxes = chain_boxes(60)
    decreasing = torch.linspace(1, 0, 60)
    assert ref.nms.nms(boxes, decreasing, 0.3).tolist() == list(range(0, 60, 2))
    shuffled = torch.rand(60, generator=torch.Generator().manual_seed(seed))
    expected = slow_nms(boxes, shuffled, 0.3)
    assert expected != all_pairs_nms(boxes, shuffled, 0.3)
    assert ref.nms.nms(boxes, shuffled, 0.3).tolist() == expected


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("thresh", [0.1, 0.5, 0.7, 0.9])
def test_nms_large_n_matches_torchvision(ref, seed, thresh):
    g = torch.Generator().manual_seed(100 + seed)
    boxes = random_boxes(1500, g, size=150)
    scores = torch.randperm(1500, generator=g).float()  # distinct: tie order is not torchvision's contract
    torch.testing.assert_close(ref.nms.nms(boxes, scores, thresh), ops.nms(boxes, scores, thresh))


def test_nms_threshold_is_strict(ref):
    # Two boxes with IoU exactly 0.5: kept both at threshold 0.5, suppressed just below it.
    boxes = torch.tensor([[0.0, 0, 30, 10], [10, 0, 40, 10]])
    scores = torch.tensor([0.9, 0.8])
    assert ref.iou.iou(boxes[:1], boxes[1:]).item() == 0.5
    assert ref.nms.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert ref.nms.nms(boxes, scores, 0.4999).tolist() == [0]


def test_nms_returns_input_indices_in_score_order(ref):
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110], [1, 1, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7])
    assert ref.nms.nms(boxes, scores, 0.5).tolist() == [1, 3, 2]


def test_nms_empty(ref):
    keep = ref.nms.nms(torch.zeros(0, 4), torch.zeros(0))
    assert keep.dtype == torch.int64 and keep.shape == (0,)


def test_nms_rejects_mismatched_scores(ref):
    with pytest.raises(ValueError, match="scores"):
        ref.nms.nms(torch.zeros(3, 4), torch.zeros(2))


@pytest.mark.parametrize("seed", range(3))
def test_class_spec_nms_matches_torchvision_batched(ref, seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(200, g, size=60) - 30  # negative coordinates too
    scores = torch.rand(200, generator=g)
    classes = torch.randint(0, 5, (200,), generator=g)
    keep = ref.nms.class_spec_nms(boxes, scores, classes, 0.5)
    torch.testing.assert_close(keep, ops.batched_nms(boxes, scores, classes, 0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nms_on_cuda_matches_cpu(ref):
    g = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(500, g), torch.rand(500, generator=g)
    keep = ref.nms.nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep.device.type == "cuda"
    torch.testing.assert_close(keep.cpu(), ref.nms.nms(boxes, scores, 0.5))
