"""Device selection, the one resolver every layer uses (runtime, autograder, sandboxed probes).

A module of its own, importing only torch, so the sandboxed child can use it without
importing the engine (and torchvision with it).
"""

from __future__ import annotations

import torch

#: Accepted spellings of the ``device`` option besides ``"cuda:N"``.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` into a ``torch.device``.

    ``"auto"`` picks CUDA when a GPU is visible, else the CPU.

    Raises:
        ValueError: unknown spelling, or CUDA asked for but not available.
    """
    if isinstance(device, torch.device):
        name = str(device)
    elif isinstance(device, str):
        name = device.strip().lower()
    else:
        raise TypeError(f"device: expected a str or torch.device, got {type(device).__name__}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} asked for, but no CUDA device is available (use 'cpu' or 'auto')")
        try:
            return torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"device: {device!r} is not a valid CUDA device name") from exc
    raise ValueError(f"device: expected one of {DEVICE_CHOICES} or 'cuda:N', got {device!r}")
