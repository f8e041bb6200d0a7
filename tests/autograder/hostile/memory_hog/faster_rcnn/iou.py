"""Hostile: allocate (and touch) memory until something gives."""

import torch

_HOARD = []
CHUNK_BYTES = 256 << 20


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    while True:
        _HOARD.append(bytearray(CHUNK_BYTES))
