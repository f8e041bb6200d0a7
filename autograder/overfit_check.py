"""The overfit smoke test, trusted side: profiles, training data, scoring and feedback.

The student's whole detector (their six modules, no reference code) trains on a few
synthetic training images inside the sandboxed child (:func:`probes_overfit.overfit_train`)
and returns its per-iteration losses and its raw detections on those same images. The
grader holds the ground truth; it validates the child's numbers, computes mAP@0.5 itself
(:func:`rcnn_kit.engine.mean_average_precision`) and passes the submission when the
training-set mAP reaches the profile's calibrated threshold. A falling loss alone never
passes: a loss can fall while inference is broken.

Two profiles: :data:`CPU_PROFILE` (a 2-core machine, e.g. Gradescope's default) and
:data:`GPU_PROFILE` (one CUDA device). Their thresholds and the measurements behind them
are in docs/OVERFIT_CALIBRATION.md (``benchmarks/calibrate_overfit.py`` re-measures them).

The feedback pictures (:mod:`autograder.overfit_feedback`) are drawn in the grader from the
validated numbers: nothing the child writes is read back.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from rcnn_kit.data import SYNTHETIC_CLASSES, VOCJsonDataset, make_synthetic_voc
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


@dataclass(frozen=True)
class OverfitProfile:
    """Everything one overfit run depends on (data, schedule, evaluation, pass mark).

    Attributes:
        name: ``"cpu"`` or ``"gpu"``, shown in feedback.
        device: ``"cpu"`` or ``"cuda"``: where the profile is meant to run.
        num_images: synthetic training images.
        image_size: their side S in pixels (multiple of 32).
        data_seed: seed of :func:`rcnn_kit.data.make_synthetic_voc`.
        max_objects: most shapes per image (at least 1).
        batch_size: images per SGD step.
        iterations: SGD steps.
        lr: base learning rate after warm-up (0.01 converges from random init; 0.02 diverged).
        warmup_iters: linear warm-up iterations.
        grad_clip_norm: global gradient-norm clip.
        threads: torch intra-op threads in the child (0 keeps the sandbox's setting).
        post_nms_topk: proposals the RPN keeps per level and image (the ``rpn.RPN`` argument);
            None keeps the RPN's default (100). Few proposals make the detections depend on
            the RPN having learned: with many, the second stage finds the objects among
            untrained anchors alone.
        score_thresh: inference score threshold for the evaluation.
        nms_thresh: inference class-specific NMS threshold.
        pass_map: the submission passes when training-set mAP@0.5 >= this.
        timeout_s: wall-clock target for one run of the reference on the profile's machine
            (the issue's budget); the hard limit is the rubric entry's ``timeout_s``, which
            must be at least this (tested), so slower but correct student code still finishes.
        seed: seed of the weight init, sampling and data order.
        calibrated: whether ``pass_map`` was measured on this kind of device (see
            docs/OVERFIT_CALIBRATION.md).
    """

    name: str
    device: str
    num_images: int
    image_size: int
    data_seed: int
    max_objects: int
    batch_size: int
    iterations: int
    lr: float
    warmup_iters: int
    grad_clip_norm: float
    threads: int
    post_nms_topk: int | None
    score_thresh: float
    nms_thresh: float
    pass_map: float
    timeout_s: float
    seed: int
    calibrated: bool

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")
        for name in ("num_images", "batch_size", "iterations", "max_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.image_size % 32 != 0 or self.image_size < 64:
            raise ValueError(f"image_size: expected a multiple of 32 and >= 64, got {self.image_size!r}")
        if not 0.0 < self.pass_map <= 1.0:
            raise ValueError(f"pass_map: expected a value in (0, 1], got {self.pass_map!r}")
        if not 0.0 <= self.score_thresh < 1.0 or not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"score_thresh, nms_thresh: out of range, got {self.score_thresh!r}, {self.nms_thresh!r}")

    def probe_params(self, num_classes: int) -> dict[str, Any]:
        """Keyword arguments of :func:`probes_overfit.overfit_train` (JSON-able)."""
        return {
            "num_classes": num_classes,
            "iterations": self.iterations,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "warmup_iters": self.warmup_iters,
            "grad_clip_norm": self.grad_clip_norm,
            "seed": self.seed,
            "score_thresh": self.score_thresh,
            "nms_thresh": self.nms_thresh,
            "threads": self.threads,
            "post_nms_topk": self.post_nms_topk,
            "device": "auto",
        }

    def with_seed(self, seed: int) -> OverfitProfile:
        """A copy with another training seed (the calibration runs many)."""
        return dataclasses.replace(self, seed=seed)


#: The CPU profile: 2 cores, as on Gradescope's default machine and this kit's CI. About 40 s
#: of CPU time per run (one thread). Data seed 1 at 192 px: the first whose objects every one
#: reach an anchor at the RPN's foreground IoU (tested); 20 proposals per level so that a dead
#: RPN cannot pass. Threshold: docs/OVERFIT_CALIBRATION.md.
CPU_PROFILE = OverfitProfile(
    name="cpu",
    device="cpu",
    num_images=4,
    image_size=192,
    data_seed=1,
    max_objects=3,
    batch_size=4,
    iterations=160,
    lr=0.01,
    warmup_iters=40,
    grad_clip_norm=10.0,
    threads=1,
    post_nms_topk=20,
    score_thresh=0.05,
    nms_thresh=0.5,
    pass_map=0.6,
    timeout_s=300.0,
    seed=0,
    calibrated=True,
)

#: The GPU profile: one CUDA device. NOT yet calibrated on a GPU: ``pass_map`` is a placeholder
#: until ``benchmarks/calibrate_overfit.py --profile gpu`` has run on one (docs/OVERFIT_CALIBRATION.md).
#: Data seed 2 at 192 px: the 16-image set with the most anchor-reachable objects (30 of 36).
GPU_PROFILE = OverfitProfile(
    name="gpu",
    device="cuda",
    num_images=16,
    image_size=192,
    data_seed=2,
    max_objects=3,
    batch_size=16,
    iterations=300,
    lr=0.01,
    warmup_iters=50,
    grad_clip_norm=10.0,
    threads=0,
    post_nms_topk=20,
    score_thresh=0.05,
    nms_thresh=0.5,
    pass_map=0.6,
    timeout_s=60.0,
    seed=0,
    calibrated=False,
)

PROFILES: dict[str, OverfitProfile] = {"cpu": CPU_PROFILE, "cuda": GPU_PROFILE}


def select_profile(device: str = "auto") -> OverfitProfile:
    """The profile for ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when visible).

    A profile whose threshold was never calibrated is not used for grading: until
    ``GPU_PROFILE.calibrated`` is True, ``"cuda"`` gets the CPU profile (same images, schedule and
    calibrated threshold; it simply runs faster on the GPU).

    Raises:
        ValueError: unknown ``device``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in PROFILES:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    profile = PROFILES[device]
    return profile if profile.calibrated else PROFILES["cpu"]


class OverfitOutputError(ValueError):
    """The child's output is malformed (missing keys, wrong shapes, non-finite values).

    The message is safe to show the student: it names the offending entry, never hidden data.
    """


@dataclass
class TrainingSet:
    """The grader's copy of the training images and their ground truth.

    Attributes:
        images: Tensor[N, 3, S, S] float32, ImageNet-normalised.
        gt_boxes: Tensor[N, G, 5] rows (x1, y1, x2, y2, class), XYXY pixels, padding rows all -1.
        class_names: names of classes ``0..C-1``.
    """

    images: Tensor
    gt_boxes: Tensor
    class_names: tuple[str, ...]

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    def probe_inputs(self) -> dict[str, Tensor]:
        """Inputs of :func:`probes_overfit.overfit_train` (copies: the grader's tensors stay untouched)."""
        return {"images": self.images.clone(), "gt_boxes": self.gt_boxes.clone()}


def make_training_set(profile: OverfitProfile, root: str | Path) -> TrainingSet:
    """Write the profile's synthetic images under ``root`` and load them as tensors.

    Args:
        profile: gives the number, size and seed of the images.
        root: an empty or new folder (the VOC-layout files are written there).

    Returns:
        The stacked training set (every image is a training image: no val split).
    """
    folder = make_synthetic_voc(
        root,
        num_images=profile.num_images,
        image_size=profile.image_size,
        seed=profile.data_seed,
        max_objects=profile.max_objects,
        val_fraction=0.0,
    )
    dataset = VOCJsonDataset(folder / "train.json", image_size=profile.image_size, class_names=SYNTHETIC_CLASSES)
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([image for _, image, _ in items])  # N x (3, S, S) -> (N, 3, S, S)
    gt_boxes = torch.stack([gt for _, _, gt in items])  # N x (G, 5) -> (N, G, 5)
    return TrainingSet(images, gt_boxes, SYNTHETIC_CLASSES)


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
            f"after {self.profile.iterations} iterations on {self.profile.num_images} images "
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
    summary = mean_average_precision(predictions, data.class_names)
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
