"""Hostile: look for the reference and the hidden checks, print them and leak them in errors."""

import sys
from pathlib import Path

import torch

_TARGETS = ("solutions/faster_rcnn/iou.py", "autograder/checks/test_iou.py", "source/solutions/faster_rcnn/iou.py")


def _steal() -> str:
    starts = [Path.cwd(), Path(__file__).resolve().parent, Path(sys.prefix).parent, Path("/autograder"), Path("/work/main")]
    stolen = []
    for start in starts:
        for folder in [start, *start.parents]:
            for target in _TARGETS:
                try:
                    stolen.append((folder / target).read_text())
                except OSError:
                    continue
    return "\n".join(stolen)


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    text = _steal()
    print(text)
    raise RuntimeError(text or "nothing readable")
