"""Save and load training checkpoints (state dicts only, safe to load).

A checkpoint is a dict written with :func:`torch.save`::

    {"format_version": 1, "model": state_dict, "optimizer": state_dict | None,
     "config": dict | None, "iteration": int | None, "extra": dict | None}

It holds only tensors and plain Python values, so :func:`load_checkpoint` reads it
with ``torch.load(..., weights_only=True)`` (no pickled code runs on load). Files
are written to a temporary name in the same folder and renamed, so an interrupted
save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT_VERSION = 1

_REQUIRED_KEYS = ("format_version", "model")


class CheckpointMismatchError(ValueError):
    """The checkpoint's parameters do not fit the model (names listed in the message)."""


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    config: dict[str, Any] | None = None,
    iteration: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally the optimizer and metadata) to ``path`` atomically.

    Args:
        path: destination file; parent folders are created.
        model: module whose ``state_dict()`` is saved.
        optimizer: optimizer whose ``state_dict()`` is saved (to resume training).
        config: plain dict of settings needed to rebuild the model (e.g.
            :meth:`rcnn_kit.build.DetectorConfig.to_dict`); only str/int/float/bool/None,
            lists and dicts, so it loads with ``weights_only=True``.
        iteration: training iteration the state belongs to.
        extra: any other plain-Python metadata (class names, metrics, ...).

    Returns:
        The path written.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``config``/``extra`` is not a dict.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    for name, value in (("config", config), ("extra", extra)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name}: expected a dict or None, got {type(value).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": config,
        "iteration": iteration,
        "extra": extra,
    }
    # Same folder (so the rename is atomic), unique name, ordinary umask permissions.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp_path, "xb") as handle:
            torch.save(payload, handle)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file without applying it to a model.

    Args:
        path: file written by :func:`save_checkpoint`.
        map_location: device the tensors are loaded to.

    Returns:
        The checkpoint dict (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a checkpoint of this kit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors have many types
        raise ValueError(f"checkpoint: {path} could not be read as a safe torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or any(key not in payload for key in _REQUIRED_KEYS):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"checkpoint: {path} is not an rcnn_kit checkpoint (expected keys {_REQUIRED_KEYS}, got {found})"
        )
    if payload["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(
            f"checkpoint: {path} has format_version {payload['format_version']!r}, "
            f"this kit reads version {CHECKPOINT_FORMAT_VERSION}"
        )
    return payload


def _describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> str | None:
    """Message listing missing, unexpected and misshaped parameters, or None when they all fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if not (missing or unexpected or misshaped):
        return None
    parts = [f"checkpoint: {path} does not match the model"]
    if missing:
        parts.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected in the checkpoint ({len(unexpected)}): {', '.join(unexpected)}")
    if misshaped:
        parts.append(f"shape mismatch ({len(misshaped)}): {'; '.join(misshaped)}")
    return "\n  ".join(parts)


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load the weights in ``path`` into ``model`` (and ``optimizer``, when given).

    Args:
        path: file written by :func:`save_checkpoint`.
        model: module with exactly the parameter names and shapes of the saved one.
        optimizer: optimizer to restore; the checkpoint must hold an optimizer state.
        map_location: device the tensors are loaded to before being copied in.

    Returns:
        The checkpoint dict (``config``, ``iteration``, ``extra``, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointMismatchError: (a ValueError) parameter names or shapes differ; the
            message lists the missing, unexpected and misshaped names.
        ValueError: the file is not a checkpoint, or ``optimizer`` was given but the
            checkpoint has no optimizer state.
    """
    path = Path(path)
    payload = read_checkpoint(path, map_location=map_location)
    problem = _describe_mismatch(model, payload["model"], path)
    if problem is not None:
        raise CheckpointMismatchError(problem)
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise ValueError(f"optimizer: given, but checkpoint {path} holds no optimizer state")
        optimizer.load_state_dict(payload["optimizer"])
    return payload
