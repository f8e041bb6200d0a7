"""Loss-curve plot written to a PNG with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

#: History keys drawn on the learning-rate panel rather than with the losses.
_NON_LOSS_KEYS = ("lr", "grad_norm")
#: Width (iterations) of the moving average drawn over the raw total loss.
SMOOTHING_WINDOW = 10
_FIGSIZE_IN = (11.0, 4.0)
_DPI = 100


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start); same length as ``values``."""
    cumsum = np.concatenate(([0.0], np.cumsum(values)))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (cumsum[ends] - cumsum[starts]) / (ends - starts)


def plot_loss_history(history: dict[str, list[float]], path: str | Path) -> Path:
    """Draw every loss per iteration (left) and the learning rate (right) into a PNG.

    Uses a bare :class:`matplotlib.figure.Figure` (Agg canvas), so it works without a
    display and never touches pyplot's global state.

    Args:
        history: ``{name: [value per iteration]}`` as in
            :attr:`rcnn_kit.engine.train.TrainResult.history`; ``"lr"`` goes to the right
            panel, ``"grad_norm"`` is not drawn, every other key is a loss.
        path: PNG file to write; parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: ``history`` holds no loss values.
    """
    losses = {k: np.asarray(v, dtype=float) for k, v in history.items() if k not in _NON_LOSS_KEYS and len(v)}
    if not losses:
        raise ValueError(f"history: no loss values to plot (keys: {sorted(history)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=_FIGSIZE_IN, dpi=_DPI, layout="constrained")
    ax_loss, ax_lr = fig.subplots(1, 2, width_ratios=(3, 1))
    for name, values in losses.items():
        iters = np.arange(1, len(values) + 1)
        if name == "total":
            ax_loss.plot(iters, values, color="black", alpha=0.25, linewidth=1)
            ax_loss.plot(iters, _moving_average(values, SMOOTHING_WINDOW), color="black", linewidth=2,
                         label=f"total (mean of {SMOOTHING_WINDOW})")
        else:
            ax_loss.plot(iters, values, linewidth=1, label=name)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training losses")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize="small")

    lr = history.get("lr", [])
    if lr:
        ax_lr.plot(np.arange(1, len(lr) + 1), lr, color="tab:purple")
    ax_lr.set_xlabel("iteration")
    ax_lr.set_title("learning rate")
    ax_lr.grid(alpha=0.3)
    fig.savefig(path, format="png")
    return path
