"""Hostile: start a detached sleeper (setsid + double fork) that should outlive the check.

The sleeper renames itself ``rcnnslp<8 hex>`` (random, so concurrent test runs cannot mix
their sleepers up) and prints that name, which reaches the instructor-only log; the kit's
test then looks for a live process of that name on the host.
"""

import ctypes
import os
import time

import torch

_PR_SET_NAME = 15
_started = False


def _detach() -> None:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            name = f"rcnnslp{os.urandom(4).hex()}"
            ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode(), 0, 0, 0)
            print(f"SLEEPER {name}", flush=True)
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
