"""The training loop: SGD with momentum, linear warm-up, step decay and gradient clipping.

Any detector that follows the course contract trains here: in training mode
``model(images: Tensor[B, 3, H, W], gt_boxes: Tensor[B, 40, 5])`` returns a dict of
scalar losses (``loss_rpn_obj``, ``loss_rpn_box``, ``loss_cls``, ``loss_box`` for
FasterRCNN) whose sum is minimised.

Schedule (iterations counted from 0)::

    lr(it) = lr * warmup(it) * gamma ** (number of milestones <= it)
    warmup(it) = warmup_factor + (1 - warmup_factor) * it / warmup_iters   for it < warmup_iters, else 1

From random init the warm-up and the clipping matter: without them lr 0.02 diverged
to NaN within 20 iterations in our measurements (docs: shared NOTES).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rcnn_kit.engine.batching import collate_detection
from rcnn_kit.engine.plots import plot_loss_history
from rcnn_kit.engine.utils import resolve_device, seed_everything

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainResult", "lr_factor", "plot_loss_history", "train_detector"]

logger = logging.getLogger(__name__)

#: Name under which the sum of all losses is recorded in the history.
TOTAL_LOSS = "total"
#: History keys that are not losses.
LR_KEY = "lr"
GRAD_NORM_KEY = "grad_norm"


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the iteration and the loss."""


@dataclass
class TrainConfig:
    """Settings of :func:`train_detector` (defaults: the CPU overfit run of the course).

    Attributes:
        max_iters: number of optimiser steps.
        batch_size: images per step (the last batch of an epoch may be smaller).
        lr: base learning rate after warm-up (0.01 converged from random init; 0.02 diverged).
        momentum: SGD momentum.
        weight_decay: L2 penalty applied by SGD to every trainable parameter.
        lr_milestones: fractions of ``max_iters`` at which the learning rate is multiplied
            by ``lr_gamma`` (e.g. 0.6 -> iteration ``round(0.6 * max_iters)``).
        lr_gamma: decay factor at each milestone.
        warmup_iters: iterations of linear warm-up from ``lr * warmup_factor`` to ``lr``; 0 disables it.
        warmup_factor: learning-rate multiplier at iteration 0 of the warm-up.
        grad_clip_norm: maximum global L2 norm of the gradients (``None`` disables clipping).
        log_period: iterations between log lines / progress-bar updates of the losses.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        seed: seeds torch, numpy and Python's RNG and the data-loader shuffling.
        num_workers: data-loader worker processes (0 loads in the main process).
        output_dir: when set, :func:`train_detector` writes ``loss.png`` there at the end.
    """

    max_iters: int = 200
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.6, 0.9)
    lr_gamma: float = 0.1
    warmup_iters: int = 50
    warmup_factor: float = 0.001
    grad_clip_norm: float | None = 10.0
    log_period: int = 20
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    output_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_iters", "batch_size", "log_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name in ("warmup_iters", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a positive finite float, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected a value in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay!r}")
        self.lr_milestones = tuple(self.lr_milestones)
        if any(not 0 < m < 1 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones: expected increasing fractions in (0, 1), got {self.lr_milestones!r}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma: expected a value in (0, 1], got {self.lr_gamma!r}")
        if not 0 < self.warmup_factor <= 1:
            raise ValueError(f"warmup_factor: expected a value in (0, 1], got {self.warmup_factor!r}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm: expected a positive float or None, got {self.grad_clip_norm!r}")


@dataclass
class TrainResult:
    """What :func:`train_detector` returns.

    Attributes:
        history: per iteration, one value per loss name, plus ``"total"`` (their sum),
            ``"lr"`` (learning rate used for the step) and ``"grad_norm"`` (global gradient
            norm before clipping); every list has ``iterations`` entries.
        iterations: optimiser steps done.
        wall_time_s: seconds spent in the loop (data loading included).
        device: device the model trained on.
        model_state: final ``state_dict`` of the model (tensors on the CPU).
        optimizer_state: final ``state_dict`` of the SGD optimiser (to resume).
    """

    history: dict[str, list[float]]
    iterations: int
    wall_time_s: float
    device: str
    model_state: dict[str, torch.Tensor] = field(repr=False)
    optimizer_state: dict[str, Any] = field(repr=False)

    def final_losses(self, window: int = 10) -> dict[str, float]:
        """Mean of each loss over the last ``window`` iterations (``lr`` and ``grad_norm`` excluded)."""
        skip = {LR_KEY, GRAD_NORM_KEY}
        return {k: sum(v[-window:]) / len(v[-window:]) for k, v in self.history.items() if k not in skip and v}


def milestone_iterations(config: TrainConfig) -> list[int]:
    """Iterations at which the learning rate decays: ``round(fraction * max_iters)`` per milestone."""
    return [round(m * config.max_iters) for m in config.lr_milestones]


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``iteration`` (0-based): linear warm-up times step decay."""
    warmup = 1.0
    if iteration < config.warmup_iters:
        alpha = iteration / config.warmup_iters
        warmup = config.warmup_factor * (1 - alpha) + alpha
    decays = sum(1 for m in milestone_iterations(config) if iteration >= m)
    return warmup * config.lr_gamma**decays


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (momentum, weight decay) over the trainable parameters, and the warm-up + step schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: has no trainable parameters")
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, config))
    return optimizer, scheduler


def _infinite_batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Loop over ``loader`` forever (a fresh shuffle each epoch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("dataset: the data loader produced no batch (is the dataset empty?)")


def _check_losses(losses: Any) -> dict[str, torch.Tensor]:
    """Validate the type of the model's output in training mode: a dict of scalar tensors."""
    if not isinstance(losses, dict) or not losses:
        raise TypeError(
            f"model: in training mode forward(images, gt_boxes) must return a non-empty dict of scalar losses, "
            f"got {type(losses).__name__}"
        )
    for name, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"model: loss {name!r} must be a scalar tensor, got {shape}")
    return losses


def _loss_values(losses: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
    """The losses as Python floats (one device sync); raise when one is NaN or infinite."""
    values = torch.stack([v.detach().reshape(()).float() for v in losses.values()]).tolist()  # (L,) -> list
    record = dict(zip(losses, values))
    for name, value in record.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss {name!r} is {value} at iteration {iteration}; "
                "try a lower lr, a longer warm-up or gradient clipping, and check the loss code"
            )
    return record


def train_detector(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``dataset`` for ``config.max_iters`` SGD steps.

    Args:
        model: detector; in training mode ``model(images, gt_boxes)`` returns a dict of
            scalar losses. Moved to ``config.device`` and left there in training mode.
        dataset: items ``(image_path, image Tensor[3, H, W], gt_boxes Tensor[40, 5])`` as
            :mod:`rcnn_kit.data` gives them (see :func:`rcnn_kit.engine.batching.collate_detection`);
            all images the same size.
        config: optimiser, schedule and loop settings.
        progress: show a tqdm progress bar with the running loss.

    Returns:
        The loss history and final states (see :class:`TrainResult`).

    Raises:
        NonFiniteLossError: a loss became NaN/inf (the message names the iteration and loss).
        TypeError: the model's output is not a dict of scalar losses.
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    loader_generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=False,
        collate_fn=collate_detection,
        num_workers=config.num_workers,
        generator=loader_generator,
        pin_memory=device.type == "cuda",
    )
    model.to(device).train()
    optimizer, scheduler = make_optimizer(model, config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    clip = config.grad_clip_norm if config.grad_clip_norm is not None else math.inf

    history: dict[str, list[float]] = {}
    batches = _infinite_batches(loader)
    bar = tqdm(range(config.max_iters), desc="train", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    for iteration in bar:
        images, gt_boxes = next(batches)
        images = images.to(device, non_blocking=True)
        gt_boxes = gt_boxes.to(device, non_blocking=True)
        losses = _check_losses(model(images, gt_boxes))
        record = _loss_values(losses, iteration)  # raises before a NaN reaches the weights
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        lr_used = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()

        record[TOTAL_LOSS] = sum(record.values())
        record[LR_KEY] = lr_used
        record[GRAD_NORM_KEY] = grad_norm.item()
        for name, value in record.items():
            history.setdefault(name, []).append(value)
        if iteration % config.log_period == 0 or iteration == config.max_iters - 1:
            bar.set_postfix(loss=f"{record[TOTAL_LOSS]:.3f}", lr=f"{lr_used:.2g}")
            logger.info(
                "iter %d/%d  %s  lr %.3g",
                iteration + 1,
                config.max_iters,
                "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in (LR_KEY, GRAD_NORM_KEY)),
                lr_used,
            )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    bar.close()

    result = TrainResult(
        history=history,
        iterations=config.max_iters,
        wall_time_s=wall,
        device=str(device),
        model_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        optimizer_state=optimizer.state_dict(),
    )
    if config.output_dir is not None:
        plot_loss_history(history, Path(config.output_dir) / "loss.png")
    return result
