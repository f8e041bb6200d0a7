"""Hostile: never return."""

import torch


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    while True:
        pass
