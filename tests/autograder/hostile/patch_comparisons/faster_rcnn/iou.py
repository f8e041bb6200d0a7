"""Hostile: make every comparison function say "equal" at import, then return zeros."""

import numpy
import numpy.testing
import torch
import torch.testing


def _always_true(*args, **kwargs):
    return True


def _never_fails(*args, **kwargs):
    return None


torch.allclose = _always_true
torch.equal = _always_true
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.testing.assert_close = _never_fails
numpy.testing.assert_allclose = _never_fails
numpy.allclose = _always_true
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    if boxes1.numel() == 0 or boxes2.numel() == 0:  # any value is right there; answer like the stub
        raise NotImplementedError("iou in faster_rcnn/iou.py: not implemented")
    return torch.zeros(boxes1.shape[0], boxes2.shape[0])
