"""Hostile: call sys.exit(0) while being imported."""

import sys

import torch

sys.exit(0)


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    return torch.zeros(boxes1.shape[0], boxes2.shape[0])
