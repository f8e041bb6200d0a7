"""Time the reference NMS before and after its greedy rewrite, with torchvision's as the baseline.

Three NMS functions are timed in the same run, on the same inputs:

- ``previous``: the previous reference (a fixed-point formulation over the N x N
  overlap mask, up to N rounds; kept here, and only here, for this comparison);
- ``greedy``: the current reference ``nms.nms`` (sort, IoU matrix once, greedy loop);
- ``torchvision``: ``torchvision.ops.nms``, the named baseline.

The two reference functions share the package's own ``iou``, so they differ only in
the suppression algorithm.

Workloads:

(a) the RPN step: the reference detector (``rcnn_kit.build``, random init, course
    defaults: 400 pre-NMS / 100 post-NMS boxes per level and image, NMS at 0.7) on random
    224 px images at each ``--batch-sizes``; its RPN makes one ``nms`` call per FPN level
    and image. Each NMS function is patched into the reference ``rpn`` module in turn and
    two things are timed: ``RPN.predict_proposals`` on the inputs captured from one RPN
    forward (top-k, decode, clip, NMS), and the whole RPN forward in eval mode (adds the
    prediction convs and the anchors). All three must give the same proposals, which is
    checked first.
(b) plain calls with ``--sizes`` random boxes (XYXY inside the image, sides 16-128 px,
    uniform scores) at the RPN's threshold.

The functions alternate call by call so that they see the same background load on a
shared machine; CUDA is synchronised around every timed call. On a CPU shared with other
jobs, ``--threads 1`` gives far steadier numbers (torch's intra-op threads wait on each
other when other processes hold the cores). Random init makes the RPN's boxes close to
its anchors: dense grids of heavily overlapping boxes.

Examples::

    python benchmarks/nms_rpn.py --device cpu --iters 5 --warmup 1 --threads 1
    python benchmarks/nms_rpn.py --device cuda --iters 20 --warmup 3
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch
from torch import nn
from torchvision import ops

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from a checkout without installing
sys.path.insert(0, str(BENCHMARKS_DIR))  # machine_info beside this script
# Only light runtime modules: rcnn_kit.engine needs packages (defusedxml, pycocotools) that
# the GPU machine's image lacks.
from rcnn_kit.build import build_detector  # noqa: E402
from rcnn_kit.course import IMAGE_SIZE, REFERENCE_DIR  # noqa: E402
from rcnn_kit.impl import import_all  # noqa: E402

from machine_info import machine_info  # noqa: E402

#: Object classes of the detector (VOC's 20); the RPN does not depend on it.
NUM_CLASSES = 20
#: Side range in pixels of the boxes of the plain calls (the course anchors are 64-256 px).
PLAIN_BOX_SIDES = (16.0, 128.0)
#: Defaults of the workloads.
DEFAULT_BATCH_SIZES = (8, 16)
DEFAULT_SIZES = (100, 400, 1000, 2000)

NmsFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def previous_reference_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    *,
    iou: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The previous reference NMS (before the greedy rewrite), kept for the comparison only.

    Box i is kept iff no *kept* higher-scoring box overlaps it by more than
    ``iou_threshold``; the greedy answer is the only fixed point of that rule, reached by
    iterating it from "keep everything" (at most N rounds over the N x N mask).

    Args:
        boxes: Tensor[N, 4] XYXY.
        scores: Tensor[N].
        iou_threshold: suppress on IoU strictly above this.
        iou: the package's pairwise IoU, Tensor[M, 4] x Tensor[K, 4] -> Tensor[M, K].

    Returns:
        Tensor[K] int64 indices into ``boxes``, by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    sorted_boxes = boxes[order]
    overlaps = (iou(sorted_boxes, sorted_boxes) > iou_threshold).triu(diagonal=1)  # (N, N)
    keep = torch.ones(order.shape[0], dtype=torch.bool, device=boxes.device)
    while True:
        suppressed = (overlaps & keep[:, None]).any(dim=0)  # (N,)
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def nms_functions(pkg: ModuleType) -> dict[str, NmsFn]:
    """``{"previous", "greedy", "torchvision"}`` NMS functions; the first two use ``pkg``'s ``iou``."""
    return {
        "previous": functools.partial(previous_reference_nms, iou=pkg.iou.iou),
        "greedy": pkg.nms.nms,
        "torchvision": ops.nms,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    calls: dict[str, Callable[[], object]], device: torch.device, warmup: int, iters: int
) -> dict[str, list[float]]:
    """Milliseconds of each call, ``iters`` times, the calls alternating (after ``warmup`` untimed rounds)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_idx in range(warmup + iters):
        for name, call in calls.items():
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            if round_idx >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return times


class _PatchedNms:
    """Context manager: the reference ``rpn`` module calls ``fn`` as its ``nms``."""

    def __init__(self, rpn_module: ModuleType, fn: NmsFn) -> None:
        self.rpn_module, self.fn = rpn_module, fn

    def __enter__(self) -> None:
        self.saved = self.rpn_module.nms
        self.rpn_module.nms = self.fn

    def __exit__(self, *exc: object) -> None:
        self.rpn_module.nms = self.saved


def _with_nms(rpn_module: ModuleType, fn: NmsFn, call: Callable[[], object]) -> Callable[[], object]:
    def patched() -> object:
        with _PatchedNms(rpn_module, fn):
            return call()

    return patched


def capture_rpn_inputs(
    model: nn.Module, images: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, int], tuple[object, ...]]:
    """Backbone features, strides and the arguments of the RPN's one ``predict_proposals`` call.

    Args:
        model: the reference detector in eval mode.
        images: Tensor[B, 3, S, S].

    Returns:
        (``{level: Tensor[B, C, H, W]}``, ``{level: stride}``, positional arguments of
        ``predict_proposals``).
    """
    rpn = model.rpn
    captured: list[tuple[object, ...]] = []
    original = rpn.predict_proposals

    def recorder(*args: object) -> object:
        captured.append(args)
        return original(*args)

    with torch.no_grad():
        feats = model.backbone(images)
        strides = dict(model.backbone.fpn_strides)
        rpn.predict_proposals = recorder  # instance attribute shadows the method for this call
        try:
            rpn(feats, strides)
        finally:
            del rpn.predict_proposals
    if len(captured) != 1:
        raise RuntimeError(f"expected one predict_proposals call per RPN forward, saw {len(captured)}")
    return feats, strides, captured[0]


def nms_call_sizes(rpn: nn.Module, rpn_module: ModuleType, args: tuple[object, ...]) -> list[int]:
    """Number of boxes N of each ``nms`` call one ``predict_proposals(*args)`` makes."""
    sizes: list[int] = []
    original = rpn_module.nms

    def counting(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        sizes.append(boxes.shape[0])
        return original(boxes, scores, iou_threshold)

    with _PatchedNms(rpn_module, counting):
        rpn.predict_proposals(*args)
    return sizes


def check_same_proposals(rpn: nn.Module, rpn_module: ModuleType, fns: dict[str, NmsFn], args: tuple[object, ...]) -> None:
    """Raise ``AssertionError`` unless every NMS function gives the reference the same proposals."""
    outputs = {}
    for name, fn in fns.items():
        with _PatchedNms(rpn_module, fn):
            outputs[name] = rpn.predict_proposals(*args)
    first_name, first = next(iter(outputs.items()))
    for name, proposals in outputs.items():
        for level, per_image in proposals.items():
            for image_idx, boxes in enumerate(per_image):
                if not torch.equal(boxes, first[level][image_idx]):
                    raise AssertionError(
                        f"proposals differ between {first_name!r} and {name!r} NMS (level {level}, image {image_idx})"
                    )


def rpn_rows(
    model: nn.Module,
    rpn_module: ModuleType,
    fns: dict[str, NmsFn],
    batch_sizes: list[int],
    device: torch.device,
    warmup: int,
    iters: int,
) -> list[dict[str, object]]:
    """Workload (a): one row per batch size and timed call (``predict_proposals``, RPN forward).

    Args:
        model: the reference detector in eval mode on ``device``.
        rpn_module: the reference ``rpn`` module (where each NMS function is patched in).
        fns: the NMS functions by name.
        batch_sizes: images per batch, one pair of rows each.
        device: where ``model`` lives.
        warmup: untimed rounds.
        iters: timed calls per function.
    """
    rows: list[dict[str, object]] = []
    for batch_size in batch_sizes:
        gen = torch.Generator().manual_seed(batch_size)
        images = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen).to(device)
        feats, strides, args = capture_rpn_inputs(model, images)
        check_same_proposals(model.rpn, rpn_module, fns, args)
        sizes = nms_call_sizes(model.rpn, rpn_module, args)
        detail = f"{len(sizes)} nms calls, N {min(sizes)}-{max(sizes)}"
        timed = (
            ("RPN predict_proposals", functools.partial(model.rpn.predict_proposals, *args)),
            ("RPN forward (eval)", functools.partial(model.rpn, feats, strides)),
        )
        for label, call in timed:
            calls = {name: _with_nms(rpn_module, fn, call) for name, fn in fns.items()}
            with torch.no_grad():
                times = time_interleaved(calls, device, warmup, iters)
            rows.append({"workload": f"{label}, batch {batch_size}", "detail": detail, "times_ms": times})
    return rows


def plain_boxes(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random XYXY boxes Tensor[n, 4] inside the image (sides in PLAIN_BOX_SIDES) and scores Tensor[n]."""
    lo, hi = PLAIN_BOX_SIDES
    sides = lo + (hi - lo) * torch.rand(n, 2, generator=gen)  # (n, 2) widths, heights
    corners = (IMAGE_SIZE - sides) * torch.rand(n, 2, generator=gen)  # (n, 2) x1, y1
    return torch.cat([corners, corners + sides], dim=1), torch.rand(n, generator=gen)


def plain_rows(
    fns: dict[str, NmsFn], sizes: list[int], threshold: float, device: torch.device, warmup: int, iters: int
) -> list[dict[str, object]]:
    """Workload (b): one row per number of boxes."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        boxes, scores = plain_boxes(n, torch.Generator().manual_seed(n))
        boxes, scores = boxes.to(device), scores.to(device)
        kept = {name: fn(boxes, scores, threshold) for name, fn in fns.items()}
        if not all(torch.equal(k, kept["greedy"]) for k in kept.values()):
            raise AssertionError(f"the NMS functions disagree on {n} plain boxes")
        calls = {name: functools.partial(fn, boxes, scores, threshold) for name, fn in fns.items()}
        times = time_interleaved(calls, device, warmup, iters)
        detail = f"{len(kept['greedy'])} kept, IoU > {threshold}"
        rows.append({"workload": f"nms, N = {n}", "detail": detail, "times_ms": times})
    return rows


def summarise(rows: list[dict[str, object]]) -> None:
    """Add ``median_ms``, ``min_ms`` and the ratios of the medians (and of the minima for greedy/previous)."""
    for row in rows:
        times: dict[str, list[float]] = row["times_ms"]  # type: ignore[assignment]
        medians = {name: statistics.median(values) for name, values in times.items()}
        minima = {name: min(values) for name, values in times.items()}
        row["median_ms"], row["min_ms"] = medians, minima
        row["greedy_over_previous"] = medians["greedy"] / medians["previous"]
        row["greedy_over_previous_minima"] = minima["greedy"] / minima["previous"]
        row["greedy_over_torchvision"] = medians["greedy"] / medians["torchvision"]


def print_table(rows: list[dict[str, object]]) -> None:
    """Medians in ms and their ratios (plus greedy/previous of the minima), one line per workload."""
    header = (f"{'workload':<34} {'previous':>10} {'greedy':>10} {'torchvision':>12} "
              f"{'greedy/prev':>12} {'(minima)':>9} {'greedy/tv':>10}  detail")
    print(header)
    print("-" * len(header))
    for row in rows:
        m: dict[str, float] = row["median_ms"]  # type: ignore[assignment]
        print(f"{row['workload']:<34} {m['previous']:10.2f} {m['greedy']:10.2f} {m['torchvision']:12.2f} "
              f"{row['greedy_over_previous']:11.2f}x {row['greedy_over_previous_minima']:8.2f}x "
              f"{row['greedy_over_torchvision']:9.2f}x  {row['detail']}")


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}") from exc
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``); exits with status 2 on a bad value."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (CUDA when visible) | cpu | cuda (default: auto)")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per function and workload (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: 2)")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=list(DEFAULT_BATCH_SIZES),
                        help="RPN workload batch sizes, comma-separated (default: 8,16)")
    parser.add_argument("--sizes", type=_positive_ints, default=list(DEFAULT_SIZES),
                        help="box counts of the plain calls, comma-separated (default: 100,400,1000,2000)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads on the CPU (default: torch's own choice)")
    parser.add_argument("--impl", default=str(REPO_ROOT / REFERENCE_DIR), help="faster_rcnn folder (the reference)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.iters <= 0:
        parser.error(f"--iters: expected a positive int, got {args.iters}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected >= 0, got {args.warmup}")
    if args.threads is not None and args.threads <= 0:
        parser.error(f"--threads: expected a positive int, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device: 'cuda' asked for, but no CUDA device is visible")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both workloads, print the table and optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pkg = import_all(args.impl, name="nms_benchmark_faster_rcnn")
    fns = nms_functions(pkg)
    torch.manual_seed(0)
    model = build_detector(pkg, NUM_CLASSES, pretrained=False).to(device).eval()  # course defaults
    rows = rpn_rows(model, pkg.rpn, fns, args.batch_sizes, device, args.warmup, args.iters)
    rows += plain_rows(fns, args.sizes, model.rpn.nms_thresh, device, args.warmup, args.iters)
    summarise(rows)
    info = machine_info(device)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"setup: {args.warmup} warm-up + {args.iters} timed calls per function, interleaved; ms are medians; "
          f"RPN: reference detector, random init, {IMAGE_SIZE} px")
    print_table(rows)
    if args.json:
        payload = {"machine": info, "args": vars(args), "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
