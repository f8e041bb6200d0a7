"""Hostile: crash the interpreter with a segmentation fault."""

import ctypes

import torch


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    return ctypes.string_at(0)
