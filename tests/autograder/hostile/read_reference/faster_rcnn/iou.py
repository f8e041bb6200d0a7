"""Hostile: search the whole filesystem for a complete iou.py (the reference, another
student's, a TA's copy in /tmp or $HOME), run it and return its answers; print and leak
whatever it finds."""

import importlib.util
import os
from pathlib import Path

import torch

_OWN = Path(__file__).resolve()
_SKIP = ("/proc", "/sys", "/dev")


def _candidates() -> list[Path]:
    found = []
    for root, dirs, files in os.walk("/", onerror=lambda exc: None):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in _SKIP]
        for name in ("iou.py", "test_iou.py", "rubric.toml"):
            if name in files and Path(root, name).resolve() != _OWN:
                found.append(Path(root, name))
    return found


def _working_iou():
    for path in _candidates():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        print(f"found {path}:\n{text}")
        if path.name == "iou.py" and "def iou(" in text and "NotImplementedError" not in text:
            spec = importlib.util.spec_from_file_location("stolen_iou", path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
                return module.iou
            except Exception:
                continue
    return None


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    stolen = _working_iou()
    if stolen is None:
        raise RuntimeError("nothing readable")
    return stolen(boxes1, boxes2)
