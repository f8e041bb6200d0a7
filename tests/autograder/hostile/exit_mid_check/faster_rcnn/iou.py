"""Hostile: end the process with status 0 in the middle of a check."""

import os

import torch


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    os._exit(0)
