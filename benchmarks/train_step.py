"""Time one training step of the reference detector against torchvision's Faster R-CNN.

Both detectors are built in the same run on the same backbone
(:class:`rcnn_kit.backbone.DetectorBackboneWithFPN`: RegNetX-400MF trunk + FPN on
p3-p5, random init), the same anchors (sides 64/128/256 = stride x 8 on p3/p4/p5,
aspect ratios 0.5/1/2) and the same sampling sizes (RPN: 16 anchors per image,
400 pre-NMS and 100 post-NMS proposals per level; second stage: 32 RoIs per image,
7x7 RoIAlign). They differ where the course's design does: the reference's second
stage is a conv stem + linear predictors, torchvision's a two-layer MLP (1024).

A step is forward + backward + SGD update on one fixed batch of random images with
1-3 random boxes each. CUDA is synchronised before and after every timed step. On the
CPU the two models' steps alternate by default, so that both see the same background
load on a shared machine. Peak memory is ``torch.cuda.max_memory_allocated`` during a
step on CUDA; on the CPU it is the process's peak resident set size, one number for
both models together.

Example::

    python benchmarks/train_step.py --device cpu --iters 3 --warmup 1 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine_info beside this script
from rcnn_kit.course import IMAGE_SIZE, REFERENCE_DIR  # noqa: E402

from rcnn_kit.backbone import DetectorBackboneWithFPN  # noqa: E402
from rcnn_kit.build import build_detector  # noqa: E402
from rcnn_kit.engine.utils import resolve_device  # noqa: E402
from rcnn_kit.impl import import_faster_rcnn  # noqa: E402

from machine_info import machine_info  # noqa: E402

#: The full course run that ``--project`` extrapolates to.
COURSE_ITERS = 9000
COURSE_BATCH_SIZE = 16
#: Course detector settings shared by both models.
NUM_CLASSES = 20
ANCHOR_STRIDE_SCALE = 8
ASPECT_RATIOS = (0.5, 1.0, 2.0)
RPN_BATCH_PER_IMAGE = 16
ROI_BATCH_PER_IMAGE = 32
PRE_NMS_TOPK_PER_LEVEL = 400
POST_NMS_TOPK_PER_LEVEL = 100
ROI_SIZE = 7
ROI_SAMPLING_RATIO = 2
#: GT rows per image (the course's padded GT tensor) and random objects per image.
MAX_BOXES = 40
OBJECTS_PER_IMAGE = (1, 3)
OBJECT_SIDE_FRACTION = (0.2, 0.6)
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4
_BYTES_PER_GIB = 1024**3


class _TorchvisionBackbone(nn.Module):
    """Our backbone with the ``OrderedDict`` output torchvision's detectors expect."""

    def __init__(self, fpn_channels: int) -> None:
        super().__init__()
        self.body = DetectorBackboneWithFPN(fpn_channels, pretrained=False)
        self.out_channels = fpn_channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(self.body(images))


def build_torchvision_model(fpn_channels: int, image_size: int) -> nn.Module:
    """torchvision's FasterRCNN on our backbone, anchors and sampling sizes (see module docstring)."""
    strides = (8, 16, 32)
    anchors = AnchorGenerator(
        sizes=tuple((s * ANCHOR_STRIDE_SCALE,) for s in strides), aspect_ratios=(ASPECT_RATIOS,) * len(strides)
    )
    return FasterRCNN(
        _TorchvisionBackbone(fpn_channels),
        num_classes=NUM_CLASSES + 1,  # torchvision counts the background class
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["p3", "p4", "p5"], output_size=ROI_SIZE, sampling_ratio=ROI_SAMPLING_RATIO),
        min_size=image_size,
        max_size=image_size,
        image_mean=[0.0, 0.0, 0.0],  # inputs are already normalised, as for the reference
        image_std=[1.0, 1.0, 1.0],
        rpn_pre_nms_top_n_train=PRE_NMS_TOPK_PER_LEVEL,
        rpn_post_nms_top_n_train=POST_NMS_TOPK_PER_LEVEL * len(strides),  # torchvision's is per image
        rpn_batch_size_per_image=RPN_BATCH_PER_IMAGE,
        box_batch_size_per_image=ROI_BATCH_PER_IMAGE,
    )


def make_batch(batch_size: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images ``Tensor[B, 3, S, S]`` and padded GT ``Tensor[B, 40, 5]`` (1-3 XYXY boxes each)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=gen)
    gt = torch.full((batch_size, MAX_BOXES, 5), -1.0)
    for b in range(batch_size):
        count = int(torch.randint(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1, (1,), generator=gen))
        lo, hi = (f * image_size for f in OBJECT_SIDE_FRACTION)
        sides = lo + (hi - lo) * torch.rand(count, 2, generator=gen)  # (count, 2) widths, heights
        corners = (image_size - sides) * torch.rand(count, 2, generator=gen)  # (count, 2) x1, y1
        gt[b, :count, :2] = corners
        gt[b, :count, 2:4] = corners + sides
        gt[b, :count, 4] = torch.randint(0, NUM_CLASSES, (count,), generator=gen).float()
    return images, gt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], None], device: torch.device) -> tuple[float, float | None]:
    """Run one step; returns (milliseconds, CUDA peak GiB during it or None on the CPU)."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    step()
    _sync(device)
    elapsed_ms = (time.perf_counter() - start) * 1000
    peak = torch.cuda.max_memory_allocated(device) / _BYTES_PER_GIB if device.type == "cuda" else None
    return elapsed_ms, peak


def time_models(
    steps: dict[str, Callable[[], None]], device: torch.device, warmup: int, iters: int, interleave: bool
) -> dict[str, dict[str, float | str]]:
    """Time each model's training step.

    Args:
        steps: ``{name: function running one training step}``.
        device: where the models live (CUDA is synchronised around every timed step).
        warmup: untimed steps per model first.
        iters: timed steps per model.
        interleave: alternate the models step by step, so that both see the same
            background load (use on a shared CPU); otherwise time one model after the other.

    Returns:
        ``{name: {"ms_per_step_median", "ms_per_step_mean", "ms_per_step_min", "peak_memory_gib",
        "peak_memory_kind"}}``.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = {name: 0.0 for name in steps}

    def run(name: str) -> None:
        elapsed, peak = _timed(steps[name], device)
        times[name].append(elapsed)
        if peak is not None:
            peaks[name] = max(peaks[name], peak)

    if interleave:
        for _ in range(warmup):
            for step in steps.values():
                step()
        for _ in range(iters):
            for name in steps:
                run(name)
    else:
        for name, step in steps.items():
            for _ in range(warmup):
                step()
            for _ in range(iters):
                run(name)
    results: dict[str, dict[str, float | str]] = {}
    for name, values in times.items():
        if device.type == "cuda":
            peak_gib, kind = peaks[name], "cuda max_memory_allocated during a step"
        else:
            peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _BYTES_PER_GIB  # Linux: KiB
            kind = "process peak RSS, both models together"
        results[name] = {
            "ms_per_step_median": statistics.median(values),
            "ms_per_step_mean": statistics.fmean(values),
            "ms_per_step_min": min(values),
            "peak_memory_gib": peak_gib,
            "peak_memory_kind": kind,
        }
    return results


def make_reference_step(
    pkg: ModuleType, images: torch.Tensor, gt: torch.Tensor, fpn_channels: int, device: torch.device
) -> Callable[[], None]:
    """One SGD step of the course detector built from ``pkg`` on images Tensor[B, 3, S, S], GT Tensor[B, 40, 5]."""
    torch.manual_seed(0)
    model = build_detector(pkg, NUM_CLASSES, fpn_channels=fpn_channels, pretrained=False,
                           batch_size_per_image=ROI_BATCH_PER_IMAGE, rpn_batch_size_per_image=RPN_BATCH_PER_IMAGE,
                           anchor_stride_scale=ANCHOR_STRIDE_SCALE, anchor_aspect_ratios=list(ASPECT_RATIOS),
                           pre_nms_topk=PRE_NMS_TOPK_PER_LEVEL, post_nms_topk=POST_NMS_TOPK_PER_LEVEL)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step() -> None:
        loss = sum(model(images, gt).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_torchvision_step(
    images: torch.Tensor, gt: torch.Tensor, fpn_channels: int, device: torch.device
) -> Callable[[], None]:
    """One SGD step of torchvision's FasterRCNN on the same batch (GT turned into its list-of-dicts targets)."""
    torch.manual_seed(0)
    model = build_torchvision_model(fpn_channels, images.shape[-1]).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    image_list = list(images)
    targets = []
    for rows in gt:
        rows = rows[rows[:, 4] >= 0]  # drop padding
        targets.append({"boxes": rows[:, :4], "labels": rows[:, 4].long() + 1})  # label 0 is background

    def step() -> None:
        loss = sum(model(image_list, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``); exits with status 2 on a bad value."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per model (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--batch-size", type=int, default=COURSE_BATCH_SIZE, help="images per step (default: 16)")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"square image side (default: {IMAGE_SIZE})")
    parser.add_argument("--fpn-channels", type=int, default=128, help="FPN channels of both models (default: 128)")
    parser.add_argument("--impl", default=str(REPO_ROOT / REFERENCE_DIR), help="faster_rcnn folder")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=None,
                        help="alternate the two models step by step (default: on for the CPU, off for CUDA, "
                        "where per-model peak memory is cleaner)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    for name in ("iters", "batch_size", "image_size", "fpn_channels"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected >= 0, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print the comparison and optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    pkg = import_faster_rcnn(args.impl, name="benchmark_faster_rcnn")
    images, gt = make_batch(args.batch_size, args.image_size, seed=0)
    images, gt = images.to(device), gt.to(device)
    interleave = args.interleave if args.interleave is not None else device.type == "cpu"
    steps = {
        "reference": make_reference_step(pkg, images, gt, args.fpn_channels, device),
        "torchvision": make_torchvision_step(images, gt, args.fpn_channels, device),
    }
    results = time_models(steps, device, args.warmup, args.iters, interleave)
    info = machine_info(device)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"setup: batch {args.batch_size}, {args.image_size} px, FPN {args.fpn_channels} ch, random init, SGD; "
          f"{args.warmup} warm-up + {args.iters} timed steps per model, "
          f"{'interleaved' if interleave else 'one model after the other'}")
    for name, r in results.items():
        r["images_per_s"] = args.batch_size / (r["ms_per_step_median"] / 1000)
        r["projected_course_hours"] = r["ms_per_step_median"] / 1000 * COURSE_ITERS / 3600 * (
            COURSE_BATCH_SIZE / args.batch_size)
        print(f"{name:>12}: {r['ms_per_step_median']:9.1f} ms/step (median; mean {r['ms_per_step_mean']:.1f}, "
              f"min {r['ms_per_step_min']:.1f})  {r['images_per_s']:7.1f} images/s  "
              f"peak {r['peak_memory_gib']:.2f} GiB ({r['peak_memory_kind']})")
    ratio = results["reference"]["ms_per_step_median"] / results["torchvision"]["ms_per_step_median"]
    ratio_min = results["reference"]["ms_per_step_min"] / results["torchvision"]["ms_per_step_min"]
    print(f"ratio reference / torchvision: {ratio:.2f}x time per step (medians; {ratio_min:.2f}x from the minima, "
          "the least disturbed steps on a shared machine)")
    for name, r in results.items():
        scaled = "" if args.batch_size == COURSE_BATCH_SIZE else f" (scaled linearly from batch {args.batch_size})"
        print(f"project {name}: {COURSE_ITERS} iterations at batch {COURSE_BATCH_SIZE} ≈ "
              f"{r['projected_course_hours']:.2f} h on this machine{scaled}")
    if args.json:
        payload = {"machine": info, "args": vars(args), "results": results, "ratio_reference_over_torchvision": ratio,
                   "ratio_of_minima": ratio_min}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
