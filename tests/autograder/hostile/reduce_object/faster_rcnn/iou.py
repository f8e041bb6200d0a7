"""Hostile: return an object whose unpickling would run code (it must never be unpickled)."""

import os

import torch

MARKER = "/tmp/rcnn_kit_hostile_reduce_marker"


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor):
    return Payload()
