"""Hostile: read the reference iou.py the grader copies beside this file, print it, put it in an error."""

from pathlib import Path

import torch


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    text = (Path(__file__).resolve().parent / "iou.py").read_text()
    print(text)
    raise RuntimeError("\n".join(text.splitlines()[10:60]))


def class_spec_nms(boxes, scores, class_ids, iou_threshold=0.5):
    return nms(boxes, scores, iou_threshold)
