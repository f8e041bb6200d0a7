"""Calibrate the overfit smoke test: the reference over many seeds vs deliberately broken detectors.

Each run trains one ``faster_rcnn`` package with an overfit profile
(:mod:`autograder.overfit_check`) in this process, through the same probe the sandboxed
child runs, and scores it the way the grader does. The reference and each broken
variant (a copy of the reference with one TODO broken by a text patch) run for the
seeds asked for; the script prints one line per run and a summary: the reference's
worst mAP, each broken variant's best, and how many runs pass at the threshold.

The threshold is right when every reference seed passes with a margin and no broken
run does: see docs/OVERFIT_CALIBRATION.md for the measured numbers.

Examples::

    # CPU profile, 20 reference seeds (minutes each on a 2-core machine)
    python benchmarks/calibrate_overfit.py --profile cpu --variants reference --seeds 0-19 --jsonl /tmp/ref.jsonl
    # every broken variant, 2 seeds each
    python benchmarks/calibrate_overfit.py --profile cpu --variants broken --seeds 0-1 --jsonl /tmp/broken.jsonl
    # GPU profile on a CUDA machine
    python benchmarks/calibrate_overfit.py --profile gpu --variants all --seeds 0-19 --jsonl /tmp/gpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT / "solutions" / "faster_rcnn"
REFERENCE = "reference"


@dataclass(frozen=True)
class Patch:
    """Replace ``old`` (which must occur exactly ``count`` times) by ``new`` in ``module``.py."""

    module: str
    old: str
    new: str
    count: int = 1


#: Broken variants: one TODO broken the way students break it, by text patches on the reference.
BROKEN_VARIANTS: dict[str, tuple[str, tuple[Patch, ...]]] = {
    "rpn_obj_inverted": (
        "RPN objectness targets inverted (1 for background, 0 for foreground)",
        (Patch("rpn", "torch.cat([torch.ones_like(fg_idx), torch.zeros_like(bg_idx)])",
               "torch.cat([torch.zeros_like(fg_idx), torch.ones_like(bg_idx)])"),),
    ),
    "rpn_loss_zero": (
        "RPN losses zeroed (the RPN never trains)",
        (Patch("rpn", 'output["loss_rpn_obj"] = loss_obj / normalizer', 'output["loss_rpn_obj"] = 0.0 * loss_obj'),
         Patch("rpn", 'output["loss_rpn_box"] = loss_box / normalizer', 'output["loss_rpn_box"] = 0.0 * loss_box')),
    ),
    "cls_labels_shifted": (
        "second-stage labels not shifted past background (class c trained as c, class 0 as background)",
        (Patch("detector", "gt_classes = torch.cat([fg_classes + 1,", "gt_classes = torch.cat([fg_classes,"),),
    ),
    "cls_ignores_features": (
        "second-stage classifier ignores the RoI features (sees zeros)",
        (Patch("detector", "self.cls_pred(features)", "self.cls_pred(torch.zeros_like(features))", count=2),),
    ),
    "no_box_decoding": (
        "inference returns the proposals, second-stage deltas not applied",
        (Patch("detector", "boxes = rcnn_apply_deltas_to_anchors(deltas, proposals)", "boxes = proposals.clone()"),),
    ),
    "anchors_transposed": (
        "location grid transposed (x and y swapped, e.g. meshgrid indexing mixed up)",
        (Patch("anchors", "torch.stack([grid_x, grid_y], dim=-1)", "torch.stack([grid_y, grid_x], dim=-1)"),),
    ),
    "empty_inference": (
        "inference keeps no detection (score threshold compared the wrong way)",
        (Patch("detector", "keep = pred_scores > test_score_thresh", "keep = pred_scores < -1.0"),),
    ),
}


def make_variant(name: str, work_dir: Path) -> ModuleType:
    """Import the reference (``name == "reference"``) or a broken copy of it as a package.

    Raises:
        ValueError: unknown variant, or a patch's text is not found the expected number of times
            (the reference changed: update the patch).
    """
    from rcnn_kit.impl import STUDENT_MODULES, import_faster_rcnn, import_module

    folder = work_dir / f"variant_{name}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(REFERENCE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    if name != REFERENCE:
        if name not in BROKEN_VARIANTS:
            raise ValueError(f"variant: unknown {name!r}; expected {REFERENCE!r} or one of {sorted(BROKEN_VARIANTS)}")
        for patch in BROKEN_VARIANTS[name][1]:
            path = folder / f"{patch.module}.py"
            source = path.read_text()
            found = source.count(patch.old)
            if found != patch.count:
                raise ValueError(f"variant {name}: {patch.old!r} occurs {found} times in {patch.module}.py, expected {patch.count}")
            path.write_text(source.replace(patch.old, patch.new))
    pkg = import_faster_rcnn(folder, name=f"calib_{name}")
    for module in STUDENT_MODULES:
        import_module(pkg, module)
    return pkg


def parse_seeds(text: str) -> list[int]:
    """``"0-19"`` or ``"0,3,5"`` (or a mix: ``"0-3,7"``) -> list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            low, high = (int(v) for v in part.split("-", 1))
            if high < low:
                raise ValueError(f"--seeds: empty range {part!r}")
            seeds.extend(range(low, high + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"--seeds: no seed in {text!r}")
    return seeds


def markdown_report(paths: list[Path], threshold: float) -> str:
    """Markdown summary of JSONL rows written by ``--jsonl``: one table row per run, then per variant.

    Also names the band a threshold should lie in: above every broken run, below every reference run.
    """
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"--report: no rows in {', '.join(map(str, paths))}")
    lines = ["| variant | seed | mAP@0.5 | recall@0.5 | total loss start -> end | detections | wall s | CPU s | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["variant"] != REFERENCE, r["variant"], r["seed"])):
        lines.append(f"| {r['variant']} | {r['seed']} | {r['map_50']:.3f} | {r['recall_50']:.2f} | "
                     f"{r['loss_start']:.3f} -> {r['loss_end']:.3f} | {r['detections']} | {r['wall_s']:.0f} | "
                     f"{r.get('cpu_s', float('nan')):.1f} | {r.get('load_avg_1min', float('nan')):.1f} |")
    lines += ["", f"| variant | runs | min mAP | max mAP | pass at {threshold} |", "| --- | --- | --- | --- | --- |"]
    by_variant: dict[str, list[float]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r["map_50"])
    for variant, maps in sorted(by_variant.items(), key=lambda kv: (kv[0] != REFERENCE, kv[0])):
        passes = sum(m >= threshold for m in maps)
        lines.append(f"| {variant} | {len(maps)} | {min(maps):.3f} | {max(maps):.3f} | {passes}/{len(maps)} |")
    reference_worst = min(by_variant.get(REFERENCE, [float("nan")]))
    broken = {v: max(maps) for v, maps in by_variant.items() if v != REFERENCE}
    uncaught = sorted(v for v, best in broken.items() if best >= threshold)
    caught_best = max((best for v, best in broken.items() if v not in uncaught), default=float("nan"))
    lines += ["", f"Worst reference run: {reference_worst:.3f}. Best run of the broken variants that fail at "
                  f"{threshold}: {caught_best:.3f}. Passing at {threshold} (not caught): {', '.join(uncaught) or 'none'}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--variants", default="reference",
                        help="comma-separated names, 'broken' (every broken variant) or 'all'; "
                             f"broken variants: {', '.join(BROKEN_VARIANTS)}")
    parser.add_argument("--seeds", default="0-19", help="training seeds, e.g. 0-19 or 0,5,7")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's)")
    parser.add_argument("--iterations", type=int, default=None, help="override the profile's iterations (exploration)")
    parser.add_argument("--num-images", type=int, default=None, help="override the profile's image count (exploration)")
    parser.add_argument("--image-size", type=int, default=None, help="override the profile's image size (exploration)")
    parser.add_argument("--post-nms-topk", type=int, default=None, help="override the RPN's post_nms_topk (exploration)")
    parser.add_argument("--jsonl", type=Path, default=None, help="append one JSON line per run to this file")
    parser.add_argument("--report", type=Path, nargs="+", default=None,
                        help="print a Markdown summary of these --jsonl files (no training)")
    args = parser.parse_args(argv)
    if args.report is not None:
        sys.path.insert(0, str(REPO_ROOT))
        from autograder.overfit_check import CPU_PROFILE, GPU_PROFILE

        print(markdown_report(args.report, (CPU_PROFILE if args.profile == "cpu" else GPU_PROFILE).pass_map))
        return 0

    os.environ.setdefault("RCNN_KIT_OFFLINE", "1")
    import dataclasses

    import torch

    from autograder.overfit_check import CPU_PROFILE, GPU_PROFILE, in_process_probe, make_training_set, run_overfit

    profile = CPU_PROFILE if args.profile == "cpu" else GPU_PROFILE
    if profile.device == "cuda" and not torch.cuda.is_available():
        parser.error("--profile gpu needs a CUDA device")
    if args.threads is not None:
        profile = dataclasses.replace(profile, threads=args.threads)
    overrides = {"iterations": args.iterations, "num_images": args.num_images, "image_size": args.image_size,
                 "post_nms_topk": args.post_nms_topk}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "num_images" in overrides:
        overrides["batch_size"] = overrides["num_images"]
    profile = dataclasses.replace(profile, **overrides)
    if args.variants == "all":
        variants = [REFERENCE, *BROKEN_VARIANTS]
    elif args.variants == "broken":
        variants = list(BROKEN_VARIANTS)
    else:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    seeds = parse_seeds(args.seeds)
    machine = f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()}"
    print(f"# profile {profile.name}: {profile}", flush=True)
    print(f"# machine: {machine}; torch {torch.__version__}; started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="calib-overfit-") as tmp:
        data = make_training_set(profile, Path(tmp) / "data")
        for variant in variants:
            pkg = make_variant(variant, Path(tmp))
            for seed in seeds:
                run_profile = profile.with_seed(seed)
                cpu_start = time.process_time()
                try:
                    run, report = run_overfit(in_process_probe(pkg), data, run_profile)
                    row = {"map_50": report.map_50, "recall_50": report.recall_50, "loss_start": report.loss_start,
                           "loss_end": report.loss_end, "detections": report.num_detections,
                           "wall_s": report.wall_time_s, "passed": report.passed, "error": None}
                except Exception as exc:  # a broken variant may crash or diverge: that is a failing run
                    row = {"map_50": 0.0, "recall_50": 0.0, "loss_start": float("nan"), "loss_end": float("nan"),
                           "detections": 0, "wall_s": float("nan"), "passed": False,
                           "error": f"{type(exc).__name__}: {exc}"[:300]}
                row = {"profile": profile.name, "variant": variant, "seed": seed, "threads": profile.threads,
                       "iterations": profile.iterations, "num_images": profile.num_images,
                       "image_size": profile.image_size, "post_nms_topk": profile.post_nms_topk, **row,
                       "cpu_s": time.process_time() - cpu_start, "load_avg_1min": os.getloadavg()[0]}
                results.setdefault(variant, []).append(row["map_50"])
                print(
                    f"{variant:22s} seed {seed:3d}  mAP@0.5 {row['map_50']:.3f}  recall {row['recall_50']:.2f}  "
                    f"loss {row['loss_start']:.3f} -> {row['loss_end']:.3f}  dets {row['detections']:4d}  "
                    f"{row['wall_s']:6.1f} s wall  {row['cpu_s']:6.1f} s CPU  load {row['load_avg_1min']:.1f}  {'PASS' if row['passed'] else 'fail'}"
                    + (f"  ({row['error']})" if row["error"] else ""),
                    flush=True,
                )
                if args.jsonl is not None:
                    with args.jsonl.open("a") as fh:
                        fh.write(json.dumps({**row, "machine": machine, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")

    print(f"# summary at threshold {profile.pass_map} (profile {profile.name}, {profile.iterations} iterations):")
    for variant, maps in results.items():
        passes = sum(m >= profile.pass_map for m in maps)
        print(f"#   {variant:22s} runs {len(maps):3d}  min mAP {min(maps):.3f}  max mAP {max(maps):.3f}  "
              f"passes {passes}/{len(maps)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
