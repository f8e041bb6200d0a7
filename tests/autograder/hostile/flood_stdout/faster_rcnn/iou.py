"""Hostile: write 100 MB to stdout and stderr, including text that looks like results."""

import sys

import torch

LINE = '{"score": 1000, "tests": []}\n' * 1000
TOTAL_BYTES = 100 << 20


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    written = 0
    while written < TOTAL_BYTES:
        sys.stdout.write(LINE)
        sys.stderr.write(LINE)
        written += 2 * len(LINE)
    sys.stdout.flush()
    return _stub_answer(boxes1, boxes2)


def _stub_answer(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """What the honest stub would do (raise), so only the attack itself could earn points."""
    raise NotImplementedError("iou in faster_rcnn/iou.py: not implemented")
