"""The overfit smoke test, trusted side: validation and scoring of the child's run.

The student's whole detector (their six modules, no reference code) trains on a few
training images inside the sandboxed child (:func:`probes_overfit.overfit_train`)
and returns its per-iteration losses and its raw detections on those same images. The
grader holds the ground truth; it validates the child's numbers, computes mAP@0.5 itself
(:func:`rcnn_kit.engine.mean_average_precision`) and passes the submission when the
training-set mAP reaches the profile's calibrated threshold. A falling loss alone never
passes: a loss can fall while inference is broken.

The profile (images, schedule, pass mark) is a file read by :mod:`autograder.overfit_profile`;
the images come from :mod:`autograder.overfit_data`; ``rcnn-kit calibrate-overfit``
(:mod:`autograder.calibration`) measures the pass mark (docs/OVERFIT_CALIBRATION.md).

The feedback pictures (:mod:`autograder.overfit_feedback`) are drawn in the grader from the
validated numbers: nothing the child writes is read back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from autograder.overfit_data import TrainingSet
from autograder.overfit_profile import OverfitProfile
from rcnn_kit.engine import ImagePrediction, mean_average_precision
from rcnn_kit.engine.evaluate import split_gt

#: Name of the probe function in ``autograder/sandboxed/probes_overfit.py``.
OVERFIT_PROBE = "overfit_train"
#: Output-key prefixes of that probe.
LOSS_PREFIX = "loss."
DETECTION_PREFIX = "det."
#: History entries that are not losses (learning rate, gradient norm).
NON_LOSS_KEYS = ("lr", "grad_norm")
#: The history entry holding the sum of the losses.
TOTAL_LOSS = "total"
#: Most detections per image accepted from the child (bounds the grader's mAP work).
MAX_DETECTIONS_PER_IMAGE = 1000
#: Iterations averaged for "loss at the start" and "loss at the end" in the feedback.
LOSS_WINDOW = 10
#: The end-of-training loss counts as "fell" below this fraction of the start loss.
LOSS_FELL_RATIO = 0.5


class OverfitOutputError(ValueError):
    """The child's output is malformed (missing keys, wrong shapes, non-finite values).

    The message is safe to show the student: it names the offending entry, never hidden data.
    """


@dataclass
class OverfitRun:
    """The child's validated output.

    Attributes:
        history: ``{name: [value per iteration]}``: every loss, ``"total"``, ``"lr"``, ``"grad_norm"``.
        detections: per training image ``(boxes Tensor[N, 4] XYXY, classes Tensor[N] int64, scores Tensor[N])``.
        train_time_s: the child's own report of its training-loop time (informational only).
    """

    history: dict[str, list[float]]
    detections: list[tuple[Tensor, Tensor, Tensor]]
    train_time_s: float


def parse_probe_output(
    outputs: Mapping[str, Tensor], num_images: int, num_classes: int, iterations: int
) -> OverfitRun:
    """Validate the overfit probe's raw output; nothing in it is trusted.

    Args:
        outputs: the probe's flat ``dict[str, Tensor]``.
        num_images: training images the child was given.
        num_classes: C.
        iterations: SGD steps the child was asked for.

    Returns:
        The validated run.

    Raises:
        OverfitOutputError: an entry is missing, misshaped, out of range or (for losses) not
            finite; the message names the entry (and the first bad iteration, 1-based).
    """
    history: dict[str, list[float]] = {}
    for key, value in outputs.items():
        if not key.startswith(LOSS_PREFIX):
            continue
        name = key[len(LOSS_PREFIX):]
        if value.shape != (iterations,) or not value.dtype.is_floating_point:
            raise OverfitOutputError(
                f"loss history {name!r}: expected {iterations} floating-point values, got {value.dtype} {tuple(value.shape)}"
            )
        bad = (~torch.isfinite(value)).nonzero()
        if bad.numel():
            first = int(bad[0])
            what = "the gradient norm" if name == "grad_norm" else f"{name!r}"
            raise OverfitOutputError(
                f"{what} became {value[first].item()} at iteration {first + 1} of {iterations}: training "
                "diverged; check your losses (normalisation, log of zero) and the box-delta clamp"
            )
        history[name] = value.double().tolist()
    if TOTAL_LOSS not in history or len([k for k in history if k not in NON_LOSS_KEYS]) < 2:
        raise OverfitOutputError(f"loss history: expected the individual losses and {TOTAL_LOSS!r}, got {sorted(history)}")

    detections = []
    for index in range(num_images):
        key = f"{DETECTION_PREFIX}{index}"
        try:
            boxes, classes, scores = (outputs[f"{key}.{part}"] for part in ("boxes", "classes", "scores"))
        except KeyError as exc:
            raise OverfitOutputError(f"detections of training image {index}: missing entry {exc.args[0]!r}") from None
        count = boxes.shape[0] if boxes.dim() == 2 else -1
        if boxes.dim() != 2 or boxes.shape[1] != 4 or classes.shape != (count,) or scores.shape != (count,):
            raise OverfitOutputError(
                f"detections of training image {index}: expected boxes Tensor[N, 4], classes Tensor[N], scores "
                f"Tensor[N], got {tuple(boxes.shape)}, {tuple(classes.shape)}, {tuple(scores.shape)}"
            )
        if count > MAX_DETECTIONS_PER_IMAGE:
            raise OverfitOutputError(
                f"detections of training image {index}: {count} detections, more than {MAX_DETECTIONS_PER_IMAGE}; "
                "check the score threshold and NMS of your inference"
            )
        if classes.dtype.is_floating_point or (count and (classes.min() < 0 or classes.max() >= num_classes)):
            raise OverfitOutputError(
                f"detections of training image {index}: classes must be integers in 0..{num_classes - 1}"
                " (background excluded)"
            )
        if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
            raise OverfitOutputError(f"detections of training image {index}: boxes or scores hold NaN or inf")
        detections.append((boxes.float(), classes.long(), scores.float()))
    train_ms = outputs.get("meta.train_ms")
    train_time_s = float(train_ms) / 1000 if train_ms is not None and train_ms.numel() == 1 else math.nan
    return OverfitRun(history, detections, train_time_s)


@dataclass
class OverfitReport:
    """The grader's verdict on one run.

    Attributes:
        profile: the profile the run used.
        map_50: training-set mAP@0.5 (computed by the grader).
        per_class_ap: AP@0.5 per class name (None: no GT of that class).
        recall_50: share of GT boxes matched one-to-one at IoU 0.5 (informational).
        num_detections: detections over all training images.
        num_images: training images.
        loss_start: mean total loss over the first :data:`LOSS_WINDOW` iterations.
        loss_end: mean total loss over the last :data:`LOSS_WINDOW` iterations.
        wall_time_s: wall time of the whole probe call, measured by the grader.
        passed: ``map_50 >= profile.pass_map``.
        hint: what to look at when it failed (empty when it passed).
    """

    profile: OverfitProfile
    map_50: float
    per_class_ap: dict[str, float | None]
    recall_50: float
    num_detections: int
    num_images: int
    loss_start: float
    loss_end: float
    wall_time_s: float
    passed: bool
    hint: str

    def summary(self) -> str:
        """One line: verdict, mAP vs threshold, iterations, time, loss start -> end (and the hint)."""
        verdict = "passed" if self.passed else "failed"
        text = (
            f"overfit test {verdict}: training-set mAP@0.5 {self.map_50:.3f} (needs >= {self.profile.pass_map:.2f}) "
            f"after {self.profile.iterations} iterations on {self.num_images} images "
            f"({self.profile.name} profile, {self.wall_time_s:.0f} s); total loss {self.loss_start:.3f} -> {self.loss_end:.3f}"
        )
        return f"{text}. {self.hint}" if self.hint else text


def failure_hint(map_50: float, num_detections: int, loss_start: float, loss_end: float) -> str:
    """What a student should look at, from the symptoms of a failed run."""
    if num_detections == 0:
        return (
            "Your detector returned no detections at all on its training images: check FasterRCNN inference "
            "(class scores from the softmax without the background column, the score threshold, NMS) and "
            "the RPN proposals."
        )
    if loss_end < LOSS_FELL_RATIO * loss_start:
        return (
            "The losses fell but the detections are poor: check your inference and box decoding "
            "(rcnn_apply_deltas_to_anchors, the deltas of the predicted class, clipping, class indices 0..C-1) "
            "and that the training targets match what inference decodes."
        )
    return (
        "The training loss did not fall enough: check the losses (targets, foreground/background sampling, "
        "normalisation), the anchors, and that every prediction depends on the features."
    )


def score_run(run: OverfitRun, data: TrainingSet, profile: OverfitProfile, wall_time_s: float) -> OverfitReport:
    """Score the child's detections against the grader's ground truth.

    Args:
        run: validated output of :func:`parse_probe_output`.
        data: the grader's training set (the ground truth).
        profile: the profile the run used (threshold, iterations).
        wall_time_s: grader-measured wall time of the probe call.

    Returns:
        The report; ``passed`` is ``map_50 >= profile.pass_map`` (NaN never passes).
    """
    predictions = []
    for index, (boxes, classes, scores) in enumerate(run.detections):
        gt_boxes, gt_classes = split_gt(data.gt_boxes[index])
        predictions.append(ImagePrediction(index, boxes, classes, scores, gt_boxes, gt_classes))
    summary = mean_average_precision(predictions, data.class_names, method=profile.metric)
    map_50 = float(summary["map_50"])  # type: ignore[arg-type]
    total = run.history[TOTAL_LOSS]
    loss_start = sum(total[:LOSS_WINDOW]) / len(total[:LOSS_WINDOW])
    loss_end = sum(total[-LOSS_WINDOW:]) / len(total[-LOSS_WINDOW:])
    num_detections = int(summary["num_detections"])  # type: ignore[arg-type]
    passed = map_50 >= profile.pass_map  # False for NaN
    return OverfitReport(
        profile=profile,
        map_50=map_50,
        per_class_ap=dict(summary["per_class_ap_50"]),  # type: ignore[arg-type]
        recall_50=math.nan if summary["recall_50"] is None else summary["recall_50"],
        num_detections=num_detections,
        num_images=data.num_images,
        loss_start=loss_start,
        loss_end=loss_end,
        wall_time_s=wall_time_s,
        passed=passed,
        hint="" if passed else failure_hint(map_50, num_detections, loss_start, loss_end),
    )


def run_overfit(
    call_probe: Callable[[str, dict[str, Tensor], dict[str, Any]], Mapping[str, Tensor]],
    data: TrainingSet,
    profile: OverfitProfile,
) -> tuple[OverfitRun, OverfitReport]:
    """Run the probe through ``call_probe`` (sandbox or in-process), validate and score it.

    Args:
        call_probe: ``(probe name, inputs, params) -> outputs``; e.g.
            ``lambda name, inputs, params: student.call(name, inputs, **params)``.
        data: the grader's training set.
        profile: the profile to run.

    Returns:
        (the validated run, the report).

    Raises:
        OverfitOutputError: the output is malformed or a loss is not finite.
    """
    params = profile.probe_params(len(data.class_names))
    start = time.monotonic()
    outputs = call_probe(OVERFIT_PROBE, data.probe_inputs(), params)
    wall = time.monotonic() - start
    run = parse_probe_output(outputs, data.num_images, len(data.class_names), profile.iterations)
    return run, score_run(run, data, profile, wall)


def in_process_probe(pkg: ModuleType) -> Callable[[str, dict[str, Tensor], dict[str, Any]], Mapping[str, Tensor]]:
    """A ``call_probe`` for :func:`run_overfit` that runs the probe in this process on ``pkg``.

    For trusted packages only (the reference and its deliberately broken variants).
    """
    from autograder.sandboxed import probes_overfit

    def call(name: str, inputs: dict[str, Tensor], params: dict[str, Any]) -> Mapping[str, Tensor]:
        return getattr(probes_overfit, name)(pkg, inputs, **params)

    return call
