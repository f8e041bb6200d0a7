"""Small helpers shared by the engine: device selection (re-exported from :mod:`rcnn_kit.devices`) and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from rcnn_kit.devices import DEVICE_CHOICES, resolve_device

__all__ = ["DEVICE_CHOICES", "resolve_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random generators."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
