"""Hostile: start a detached sleeper (setsid + double fork) that should outlive the check."""

import os
import time

import torch

PID_FILE = "/tmp/rcnn_kit_hostile_sleeper.pid"
_started = False


def _detach() -> None:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(PID_FILE, "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(3600)
        os._exit(0)


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    global _started
    if not _started:
        _started = True
        _detach()
        time.sleep(0.5)
    return _stub_answer(boxes1, boxes2)


def _stub_answer(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """What the honest stub would do (raise), so only the attack itself could earn points."""
    raise NotImplementedError("iou in faster_rcnn/iou.py: not implemented")
