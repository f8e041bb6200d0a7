"""Probes used only by the kit's own sandbox tests (copied into the child like autograder/sandboxed/probes.py)."""

from __future__ import annotations

from types import ModuleType

import torch


def call_iou(pkg: ModuleType, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``pkg.iou.iou(boxes1, boxes2)`` -> ``{"out": Tensor[M, N]}``."""
    return {"out": pkg.iou.iou(inputs["boxes1"], inputs["boxes2"])}


def can_read(pkg: ModuleType, inputs: dict[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """``{"readable": 1}`` when the child can open ``path`` for reading, else 0."""
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        ok = 1
    except OSError:
        ok = 0
    return {"readable": torch.tensor(ok)}



def module_loaded(pkg: ModuleType, inputs: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``{"loaded": 1}`` when the module ``name`` is already imported in the child, else 0."""
    import sys

    return {"loaded": torch.tensor(int(name in sys.modules))}
