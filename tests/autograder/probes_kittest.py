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


#: Folders a filesystem walk skips (kernel views, not files anyone planted).
_WALK_SKIP = ("/proc", "/sys", "/dev")


def find_files(pkg: ModuleType, inputs: dict[str, torch.Tensor], names: list[str], markers: list[str],
               limit: int = 200) -> tuple[dict, dict]:
    """Walk the whole filesystem the child sees for readable files called one of ``names``.

    Returns ``({"count": n}, {"paths": [...], "holding": [...]})``: the paths found, and those
    whose text contains one of ``markers`` (lines of the reference's solutions): what a
    student who searches the machine for the reference would get.
    """
    import os

    wanted, found = set(names), []
    for root, dirs, files in os.walk("/", onerror=lambda exc: None):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in _WALK_SKIP]
        for name in wanted.intersection(files):
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as fh:
                    text = fh.read().decode("utf-8", errors="replace")
            except OSError:
                continue
            found.append((path, any(marker in text for marker in markers)))
    found.sort()
    return ({"count": torch.tensor(len(found))},
            {"paths": [p for p, _ in found][:limit], "holding": [p for p, hit in found if hit][:limit]})
