"""Tiny stand-ins for a dataset and a detector, made by the tests themselves."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

MAX_BOXES = 40


def padded_gt(rows: list[list[float]]) -> torch.Tensor:
    """``Tensor[40, 5]``: the given (x1, y1, x2, y2, class) rows, then padding rows of -1."""
    gt = torch.full((MAX_BOXES, 5), -1.0)
    if rows:
        gt[: len(rows)] = torch.tensor(rows, dtype=torch.float32)
    return gt


class FakeDetectionDataset(Dataset):
    """``num_items`` items ``(path, image Tensor[3, S, S], gt Tensor[40, 5])`` with one box each."""

    def __init__(self, num_items: int = 4, size: int = 32, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randn(num_items, 3, size, size, generator=gen)
        self.gts = [padded_gt([[2.0 + i, 3.0, 20.0, 25.0, float(i % 2)]]) for i in range(num_items)]

    def __len__(self) -> int:
        return len(self.gts)

    def __getitem__(self, index: int):
        return f"fake_{index}.jpg", self.images[index], self.gts[index]


class TinyLossModel(nn.Module):
    """Regresses each image's first GT box from its mean colour; returns two scalar losses.

    ``nan_at``: the forward call (0-based) at which ``loss_b`` becomes NaN.
    ``scale``: multiplies both losses (large values give large gradients).
    """

    def __init__(self, nan_at: int | None = None, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.nan_at = nan_at
        self.scale = scale
        self.calls = 0

    def forward(self, images: torch.Tensor, gt_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = images.mean(dim=(2, 3))  # (B, 3, H, W) -> (B, 3)
        pred = self.linear(pooled)  # (B, 4)
        target = gt_boxes[:, 0, :4] / 32.0
        loss_a = self.scale * ((pred - target) ** 2).mean()
        loss_b = self.scale * 0.1 * pred.abs().mean()
        if self.nan_at is not None and self.calls == self.nan_at:
            loss_b = loss_b * float("nan")
        self.calls += 1
        return {"loss_a": loss_a, "loss_b": loss_b}
