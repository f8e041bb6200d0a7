"""The calibration's verdict: the pass mark from the runs' scores, a table and a plot.

The pass mark of the overfit test must sit below every run of the reference and above every
run of the broken detectors it is meant to catch, with a stated margin on both sides
(:func:`choose_threshold`). A broken detector that scores too close to the reference is
listed as "not caught" (the unit checks catch it) instead of pulling the pass mark up.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Name of the reference among the calibration's variants.
REFERENCE = "reference"
#: Smallest distance of the pass mark to the worst reference run and to the best caught broken run.
DEFAULT_MIN_MARGIN = 0.1
#: The pass mark is rounded to a multiple of this when the margins allow it.
THRESHOLD_STEP = 0.05
#: Below this training-set mAP the reference has not overfit: the schedule is too short.
MIN_REFERENCE_MAP = 0.5
#: Slack of the margin comparisons (scores are rounded decimals; 0.6 - 0.2 must count as 0.4).
_EPS = 1e-9


@dataclass(frozen=True)
class RunRow:
    """One calibration run (the worker's result; an error counts as mAP 0).

    Attributes:
        variant: :data:`REFERENCE` or a broken variant's name.
        seed: training seed.
        map_50: training-set mAP@0.5.
        recall_50: share of GT boxes found at IoU 0.5.
        loss_start: mean total loss over the first iterations.
        loss_end: mean total loss over the last iterations.
        detections: detections over all training images.
        run_s: wall seconds of the probe (training and detection).
        process_s: wall seconds of the whole worker process (start-up included).
        cpu_s: CPU seconds of the probe.
        error: why the run failed (None: it finished).
    """

    variant: str
    seed: int
    map_50: float
    recall_50: float
    loss_start: float
    loss_end: float
    detections: int
    run_s: float
    process_s: float
    cpu_s: float
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The chosen pass mark and the evidence for it.

    Attributes:
        pass_map: the pass mark (a placeholder when not ``calibrated``).
        calibrated: the margins hold on both sides and at least one broken variant is caught.
        worst_reference: lowest reference mAP.
        best_broken: highest mAP of each broken variant.
        caught: variants whose best run lies at least two margins below the worst reference run.
        uncaught: the others.
        margin: distance of ``pass_map`` to the nearer of the worst reference run and the best
            caught run (NaN when not calibrated).
        min_margin: the margin asked for.
        reason: why it is not calibrated ("" when it is).
    """

    pass_map: float
    calibrated: bool
    worst_reference: float
    best_broken: Mapping[str, float]
    caught: tuple[str, ...]
    uncaught: tuple[str, ...]
    margin: float
    min_margin: float
    reason: str = ""


def choose_threshold(
    reference: Sequence[float], broken: Mapping[str, Sequence[float]], min_margin: float = DEFAULT_MIN_MARGIN
) -> Verdict:
    """The pass mark halfway between the worst reference run and the best caught broken run.

    A broken variant is caught when its best run is at least ``2 * min_margin`` below the
    worst reference run. The midpoint is rounded to :data:`THRESHOLD_STEP` when that keeps
    ``min_margin`` on both sides, else to 0.01.

    Args:
        reference: the reference's mAP per seed (at least one).
        broken: each broken variant's mAP per seed.
        min_margin: smallest distance of the pass mark to either side, in (0, 0.5).

    Raises:
        ValueError: no reference run, or ``min_margin`` out of range.
    """
    if not reference:
        raise ValueError("reference: no reference run to calibrate on")
    if not 0.0 < min_margin < 0.5:
        raise ValueError(f"min_margin: expected a value in (0, 0.5), got {min_margin!r}")
    worst = min(reference)
    best = {name: max(maps) for name, maps in broken.items() if maps}
    caught = tuple(sorted(n for n, b in best.items() if b <= worst - 2 * min_margin + _EPS))
    uncaught = tuple(sorted(n for n in best if n not in caught))
    reason = ""
    if worst < MIN_REFERENCE_MAP:
        reason = (f"the reference's worst run scored {worst:.3f} < {MIN_REFERENCE_MAP}: it does not overfit these "
                  "images in this many iterations (raise --iterations or use fewer images)")
    elif not caught:
        reason = (f"no broken variant scored at least {2 * min_margin:.2f} below the reference's worst run "
                  f"{worst:.3f}: the test catches none of them")
    if reason:
        placeholder = max(THRESHOLD_STEP, math.floor(worst / 2 / THRESHOLD_STEP) * THRESHOLD_STEP)
        return Verdict(min(placeholder, 1.0), False, worst, best, caught, uncaught, math.nan, min_margin, reason)
    top = max(best[n] for n in caught)
    middle = (worst + top) / 2
    pass_map = round(middle / THRESHOLD_STEP) * THRESHOLD_STEP
    if worst - pass_map < min_margin - _EPS or pass_map - top < min_margin - _EPS:
        pass_map = round(middle, 2)
    pass_map = round(pass_map, 4)
    margin = min(worst - pass_map, pass_map - top)
    return Verdict(pass_map, True, worst, best, caught, uncaught, margin, min_margin)


def summary_table(rows: Sequence[RunRow], verdict: Verdict) -> str:
    """Markdown: one line per variant (runs, min and max mAP, passes at the pass mark, seconds), then the verdict."""
    by_variant: dict[str, list[RunRow]] = {}
    for row in sorted(rows, key=lambda r: (r.variant != REFERENCE, r.variant, r.seed)):
        by_variant.setdefault(row.variant, []).append(row)
    lines = [f"| variant | runs | min mAP | max mAP | pass at {verdict.pass_map:g} | median run s | errors |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, runs in by_variant.items():
        maps = [r.map_50 for r in runs]
        times = [r.run_s for r in runs if not math.isnan(r.run_s)]
        median = f"{statistics.median(times):.1f}" if times else "-"
        errors = sum(r.error is not None for r in runs)
        passes = sum(m >= verdict.pass_map for m in maps)
        lines.append(f"| {name} | {len(runs)} | {min(maps):.3f} | {max(maps):.3f} | {passes}/{len(runs)} | {median} "
                     f"| {errors} |")
    if verdict.calibrated:
        lines.append(
            f"\nPass mark {verdict.pass_map:g}: worst reference run {verdict.worst_reference:.3f}, best caught broken run "
            f"{max(verdict.best_broken[n] for n in verdict.caught):.3f}, margin {verdict.margin:.3f} "
            f"(at least {verdict.min_margin:g} asked). Not caught: {', '.join(verdict.uncaught) or 'none'}.")
    else:
        lines.append(f"\nNOT calibrated: {verdict.reason}.")
    return "\n".join(lines)


def plot_calibration(rows: Sequence[RunRow], verdict: Verdict, path: str | Path, title: str) -> Path:
    """A PNG: each variant's mAP per seed (one column a variant) against the pass mark and its margin band.

    Green dots: the reference; red: caught broken variants; orange: not caught; a cross marks a
    run that failed with an error (plotted at its score 0).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [REFERENCE, *sorted({r.variant for r in rows} - {REFERENCE})]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.5))
    if verdict.calibrated:
        ax.axhspan(verdict.pass_map - verdict.margin, verdict.pass_map + verdict.margin, color="0.9", zorder=0,
                   label=f"margin {verdict.margin:.2f}")
    ax.axhline(verdict.pass_map, color="black", linestyle="--", zorder=1,
               label=f"pass mark {verdict.pass_map:g}" + ("" if verdict.calibrated else " (not calibrated)"))
    for column, name in enumerate(names):
        runs = [r for r in rows if r.variant == name]
        colour = "tab:green" if name == REFERENCE else "tab:red" if name in verdict.caught else "tab:orange"
        offsets = [column + 0.25 * (i / max(1, len(runs) - 1) - 0.5) if len(runs) > 1 else column for i in range(len(runs))]
        for x, run in zip(offsets, runs):
            ax.scatter(x, run.map_50, color=colour, marker="x" if run.error else "o", s=28, zorder=2)
    for colour, label in (("tab:green", "reference"), ("tab:red", "broken, caught"), ("tab:orange", "broken, not caught")):
        ax.scatter([], [], color=colour, s=28, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("training-set mAP@0.5")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
