"""Hostile: return a tensor subclass whose comparisons and conversions lie."""

import torch


class Liar(torch.Tensor):
    def __eq__(self, other):
        return True

    def __sub__(self, other):
        return torch.zeros(1)

    def abs(self):
        return torch.zeros(1)

    def numpy(self, *args, **kwargs):
        raise RuntimeError("no")

    def tolist(self):
        return []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    if boxes1.numel() == 0 or boxes2.numel() == 0:  # any value is right there; answer like the stub
        raise NotImplementedError("iou in faster_rcnn/iou.py: not implemented")
    return torch.full((boxes1.shape[0], boxes2.shape[0]), 0.5).as_subclass(Liar)
