"""``rcnn-kit calibrate-overfit``: measure the overfit test's pass mark on this machine, write a profile.

The reference trains with N seeds and every broken variant (:mod:`autograder.variants`,
``autograder/calibration_variants/``) with M seeds, each run in its own process
(:mod:`autograder.calibration_worker`), ``--jobs`` of them at a time, on the given overfit
data: the synthetic images of the base profile, or an overfit subset folder
(``rcnn-kit data overfit-subset``, e.g. of VOC2007). The pass mark is chosen between the
worst reference run and the best caught broken run (:func:`autograder.calibration_report.choose_threshold`)
and written with the schedule, the data's identity and the provenance to a profile file;
a plot shows every run against the pass mark. See docs/OVERFIT_CALIBRATION.md.

Exit status: 0 calibrated, 1 written but not calibrated (the reason is printed), 2 bad arguments.
``python -m autograder.calibration ARGS`` runs the same command without the rest of the CLI
(e.g. on a GPU machine where the kit is not installed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder.calibration_report import (
    DEFAULT_MIN_MARGIN, REFERENCE, RunRow, Verdict, choose_threshold, plot_calibration, summary_table,
)
from autograder.calibration_worker import RESULT_PREFIX
from autograder.overfit_profile import DEVICE_CLASSES, METRICS, PROFILES_DIR, OverfitProfile, load_profile, write_profile
from autograder.variants import build_variant, calibration_variants

if TYPE_CHECKING:  # torch is imported when a calibration runs, not when the CLI starts
    from autograder.overfit_data import TrainingSet

#: ``--data`` value for the base profile's synthetic images.
SYNTHETIC = "synthetic"
#: A run may take this many times the profile's wall-clock target before it is stopped.
RUN_TIMEOUT_FACTOR = 10
#: Parallel runs on a GPU by default (the training step is launch-bound), capped by the CPUs.
DEFAULT_CUDA_JOBS = 8
#: The repository root that holds the ``autograder`` package (put first on the workers' path).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """One calibration (the command's arguments, resolved)."""

    device: str
    data: str
    base: OverfitProfile
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    variant_seeds: tuple[int, ...]
    jobs: int
    out: Path
    plot: Path
    runs_log: Path
    reference_dir: Path
    min_margin: float = DEFAULT_MIN_MARGIN
    command: str = ""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``calibrate-overfit`` to the ``rcnn-kit`` parser."""
    p = subparsers.add_parser("calibrate-overfit", help="measure the overfit test's pass mark here and write a profile",
                              description="Train the reference (N seeds) and the broken variants on the overfit data, "
                              "choose the pass mark between them, write the profile, a plot and a per-run log.")
    p.add_argument("--data", default=SYNTHETIC,
                   help="overfit subset folder, or 'synthetic' (the base profile's images; default)")
    p.add_argument("--device", choices=DEVICE_CLASSES, required=True, help="device class to calibrate (and run) on")
    p.add_argument("--seeds", type=int, default=20, help="reference runs, seeds 0..N-1 (default %(default)s)")
    p.add_argument("--variants", default="all", help="broken variants: 'all' (default), 'none' or comma-separated names")
    p.add_argument("--variant-seeds", type=int, default=2, help="runs per broken variant, seeds 0..M-1 (default %(default)s)")
    p.add_argument("--jobs", type=int, default=None,
                   help=f"runs in parallel, one process each (default 1 on cpu, {DEFAULT_CUDA_JOBS} on cuda)")
    p.add_argument("--out", type=Path, default=None, help="profile file to write (default ./overfit_profile_<device>.toml)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the scores (default: --out with .png)")
    p.add_argument("--base", type=Path, default=None,
                   help=f"profile whose schedule is calibrated (default {PROFILES_DIR}/<device>.toml)")
    p.add_argument("--metric", choices=METRICS, default="voc",
                   help="mAP definition the runs are scored with and grading will use (default voc: VOC all-point)")
    p.add_argument("--min-margin", type=float, default=DEFAULT_MIN_MARGIN, help="margin asked on both sides of the pass mark")
    p.add_argument("--reference", type=Path, default=None, help="reference faster_rcnn folder (default: the course's)")
    schedule = p.add_argument_group("schedule (default: the base profile's)")
    for flag, what in (("iterations", "SGD steps"), ("batch-size", "images per step"), ("warmup-iters", "warm-up steps"),
                       ("post-nms-topk", "RPN proposals kept per level and image"), ("threads", "torch threads per run")):
        schedule.add_argument(f"--{flag}", type=int, default=None, help=what)
    synthetic = p.add_argument_group("synthetic images (default: the base profile's)")
    for flag, what in (("num-images", "images (also the batch size unless --batch-size)"), ("image-size", "side in px"),
                       ("data-seed", "seed of the generator")):
        synthetic.add_argument(f"--{flag}", type=int, default=None, help=what)
    p.set_defaults(func=_cmd_calibrate)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Resolve the command's arguments.

    Raises:
        ValueError: a count out of range, an unknown variant, or schedule flags that do not fit.
        FileNotFoundError: the base profile or the reference folder does not exist.
    """
    from rcnn_kit.course import reference_dir

    for name, low in (("seeds", 1), ("variant_seeds", 0)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name.replace('_', '-')}: expected at least {low}, got {getattr(args, name)}")
    jobs = args.jobs if args.jobs is not None else (1 if args.device == "cpu" else min(DEFAULT_CUDA_JOBS, os.cpu_count() or 1))
    if jobs < 1:
        raise ValueError(f"--jobs: expected at least 1, got {jobs}")
    base = load_profile(args.base or PROFILES_DIR / f"{args.device}.toml")
    changes = {k: getattr(args, k) for k in ("iterations", "batch_size", "warmup_iters", "post_nms_topk", "threads")
               if getattr(args, k) is not None}
    data_changes = {k: v for k, v in (("num_images", args.num_images), ("image_size", args.image_size),
                                      ("seed", args.data_seed)) if v is not None}
    if data_changes and args.data != SYNTHETIC:
        raise ValueError("--num-images, --image-size, --data-seed: only for --data synthetic (a subset is used whole)")
    if args.data == SYNTHETIC and base.data.kind != SYNTHETIC and not data_changes:
        raise ValueError(f"--data synthetic: the base profile {base.source} trains on a subset; give --data DIR or --base")
    if data_changes:
        changes["data"] = replace(base.data, kind=SYNTHETIC, sha256="", **data_changes)
        if "num_images" in data_changes and args.batch_size is None:
            changes["batch_size"] = data_changes["num_images"]
    base = base.replace(device=args.device, metric=args.metric, **changes)
    names = {"all": None, "none": []}.get(args.variants, [v.strip() for v in args.variants.split(",") if v.strip()])
    variants = tuple(v.name for v in calibration_variants(names))
    device_name(args.device)  # fails early without a GPU for --device cuda
    out = args.out or Path(f"overfit_profile_{args.device}.toml")
    reference = args.reference or reference_dir()
    if not (reference / "iou.py").is_file():
        raise FileNotFoundError(f"--reference: {reference} holds no faster_rcnn package")
    return Settings(
        device=args.device, data=args.data, base=base, seeds=tuple(range(args.seeds)), variants=variants,
        variant_seeds=tuple(range(args.variant_seeds)), jobs=jobs, out=out, plot=args.plot or out.with_suffix(".png"),
        runs_log=out.with_suffix(".runs.jsonl"), reference_dir=reference, min_margin=args.min_margin,
        command=_command_line(),
    )


def _command_line() -> str:
    """This command as typed (``rcnn-kit calibrate-overfit ...``), for the provenance."""
    argv = sys.argv
    if "calibrate-overfit" in argv:
        tail = argv[argv.index("calibrate-overfit") + 1:]
    else:  # python -m autograder.calibration ARGS
        tail = argv[1:] if argv and argv[0].endswith("calibration.py") else []
    return shlex.join(["rcnn-kit", "calibrate-overfit", *tail])


def _cmd_calibrate(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rcnn-kit calibrate-overfit: error: {exc}", file=sys.stderr)
        return 2
    try:
        _, verdict, rows = calibrate(settings)
    except (ValueError, FileNotFoundError) as exc:  # unusable data, or a variant whose edit no longer applies
        print(f"rcnn-kit calibrate-overfit: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(rows, verdict))
    print(f"wrote {settings.out}, {settings.plot} and {settings.runs_log}")
    return 0 if verdict.calibrated else 1


def calibrate(settings: Settings, log: Callable[[str], None] = print) -> tuple[OverfitProfile, Verdict, list[RunRow]]:
    """Run the calibration and write the profile, the plot and the per-run log.

    Returns:
        (the profile written, the verdict, every run).

    Raises:
        ValueError: a variant's edit does not apply to the reference, or the data are unusable.
        FileNotFoundError: the data folder does not exist.
    """
    from autograder.overfit_data import data_spec

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rcnn-calibrate-") as tmp:
        work = Path(tmp)
        data, kind = _load_data(settings, work)
        batch = min(settings.base.batch_size, data.num_images)
        profile = settings.base.replace(data=data_spec(data, kind, settings.base.data), batch_size=batch)
        run_profile = write_profile(profile, work / "run_profile.toml")
        jobs = _jobs(settings, work, data, run_profile)
        log(f"# calibrating on {settings.device} ({device_name(settings.device)}): {data.describe()}; "
            f"{profile.iterations} iterations, batch {profile.batch_size}; {len(jobs)} runs, {settings.jobs} at a time")
        settings.runs_log.parent.mkdir(parents=True, exist_ok=True)
        settings.runs_log.write_text("")
        rows = _run_all(jobs, settings, profile, log)
    reference, broken = scores_by_variant(rows)
    verdict = choose_threshold(reference, broken, settings.min_margin)
    profile = profile.replace(pass_map=verdict.pass_map, calibrated=verdict.calibrated,
                              provenance=provenance(settings, rows, verdict, time.monotonic() - start))
    write_profile(profile, settings.out)
    title = (f"{settings.device} ({device_name(settings.device)}): {profile.data.num_images} {kind} images, "
             f"{profile.iterations} iterations, {len(reference)} reference seeds")
    plot_calibration(rows, verdict, settings.plot, title)
    return profile, verdict, rows


def scores_by_variant(rows: list[RunRow]) -> tuple[list[float], dict[str, list[float]]]:
    """(the reference's mAP per run, each broken variant's mAP per run), in the rows' order."""
    broken: dict[str, list[float]] = {}
    for row in rows:
        if row.variant != REFERENCE:
            broken.setdefault(row.variant, []).append(row.map_50)
    return [r.map_50 for r in rows if r.variant == REFERENCE], broken


def _load_data(settings: Settings, work: Path) -> tuple[TrainingSet, str]:
    from autograder.overfit_data import subset_set, synthetic_set

    if settings.data == SYNTHETIC:
        return synthetic_set(settings.base.data, work / "data"), SYNTHETIC
    return subset_set(Path(settings.data)), "subset"


def _jobs(settings: Settings, work: Path, data: TrainingSet, run_profile: Path) -> list[dict[str, Any]]:
    """One job per run: the reference's seeds, then each variant's; the variants are written (and checked) here."""
    packages = {REFERENCE: settings.reference_dir}
    for variant in calibration_variants(list(settings.variants)):
        packages[variant.name] = build_variant(settings.reference_dir, work / "variants" / variant.name, variant.edits,
                                               where=f"calibration variant {variant.name}")
    plan = [(REFERENCE, s) for s in settings.seeds] + [(v, s) for v in settings.variants for s in settings.variant_seeds]
    return [
        {"variant": name, "seed": seed, "package": str(packages[name]), "module_name": f"calib_{name}",
         "profile": str(run_profile), "data": str(data.folder), "image_size": data.image_size,
         "job_file": str(work / f"job_{index}.json")}
        for index, (name, seed) in enumerate(plan)
    ]


def _run_all(
    jobs: list[dict[str, Any]], settings: Settings, profile: OverfitProfile, log: Callable[[str], None]
) -> list[RunRow]:
    """Run the jobs, ``settings.jobs`` processes at a time; log and append each row as it finishes."""
    timeout_s = RUN_TIMEOUT_FACTOR * profile.timeout_s
    env = worker_env(settings.device, profile.threads)
    rows: list[RunRow] = []
    with ThreadPoolExecutor(max_workers=settings.jobs) as pool:  # each thread waits on one worker process
        futures = [pool.submit(run_worker, job, env, timeout_s) for job in jobs]
        for future in as_completed(futures):  # rows are logged here, in the main thread only
            row = future.result()
            rows.append(row)
            with settings.runs_log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(row)) + "\n")
            log(f"{row.variant:22s} seed {row.seed:3d}  mAP@0.5 {row.map_50:.3f}  recall {row.recall_50:.2f}  "
                f"loss {row.loss_start:.3f} -> {row.loss_end:.3f}  dets {row.detections:4d}  run {row.run_s:6.1f} s  "
                f"process {row.process_s:6.1f} s  ({len(rows)}/{len(jobs)})" + (f"  [{row.error}]" if row.error else ""))
    return sorted(rows, key=lambda r: (r.variant != REFERENCE, r.variant, r.seed))


def worker_env(device: str, threads: int) -> dict[str, str]:
    """Environment of a worker: this checkout first on the path, offline, its thread count, no GPU on ``cpu``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["RCNN_KIT_OFFLINE"] = "1"
    if threads > 0:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_worker(job: dict[str, Any], env: dict[str, str], timeout_s: float) -> RunRow:
    """Run one job in a fresh ``python -m autograder.calibration_worker`` process; its row.

    A worker that times out, dies or prints no result gives a row with ``error`` set and mAP 0.
    """
    job_file = Path(job["job_file"])
    job_file.write_text(json.dumps(job), encoding="utf-8")
    start = time.monotonic()
    cmd = [sys.executable, "-m", "autograder.calibration_worker", str(job_file)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        result = json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else {
            "error": f"worker exited with code {proc.returncode} and no result: {proc.stderr.strip()[-300:]}"}
    except subprocess.TimeoutExpired:
        result = {"error": f"timed out after {timeout_s:.0f} s"}
    nan = float("nan")
    return RunRow(
        variant=job["variant"], seed=int(job["seed"]), map_50=float(result.get("map_50", 0.0)),
        recall_50=float(result.get("recall_50", 0.0)), loss_start=float(result.get("loss_start", nan)),
        loss_end=float(result.get("loss_end", nan)), detections=int(result.get("detections", 0)),
        run_s=float(result.get("run_s", nan)), process_s=time.monotonic() - start, cpu_s=float(result.get("cpu_s", nan)),
        error=result.get("error"),
    )


def device_name(device: str) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) or the CPU's model, with the CPU count."""
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no CUDA device here")
        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} CPUs"


def provenance(settings: Settings, rows: list[RunRow], verdict: Verdict, wall_s: float) -> dict[str, Any]:
    """The profile's [provenance] table: machine, versions, seeds, scores, times."""
    import torch
    import torchvision

    reference, broken = scores_by_variant(rows)
    run_times = [r.run_s for r in rows if r.error is None] or [float("nan")]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": settings.command,
        "device_name": device_name(settings.device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "data": settings.data,
        "jobs": settings.jobs,
        "reference_seeds": list(settings.seeds),
        "reference_maps": [round(m, 4) for m in reference],
        "reference_worst_map": round(verdict.worst_reference, 4),
        "reference_passed": sum(m >= verdict.pass_map for m in reference),
        "variant_seeds": list(settings.variant_seeds),
        "min_margin": settings.min_margin,
        "margin": round(verdict.margin, 4),
        "caught": list(verdict.caught),
        "uncaught": list(verdict.uncaught),
        "reason": verdict.reason,
        "errors": [f"{r.variant} seed {r.seed}: {r.error}" for r in rows if r.error],
        "seconds_per_run_median": round(statistics.median(run_times), 2),
        "seconds_per_run_max": round(max(run_times), 2),
        "cpu_seconds_per_run_median": round(statistics.median([r.cpu_s for r in rows]), 2) if rows else float("nan"),
        "wall_seconds_total": round(wall_s, 1),
        "broken_best": {name: round(best, 4) for name, best in verdict.best_broken.items()},
        "broken_maps": {name: [round(m, 4) for m in maps] for name, maps in broken.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m autograder.calibration ARGS`` is ``rcnn-kit calibrate-overfit ARGS`` (no other command loaded)."""
    parser = argparse.ArgumentParser(prog="python -m autograder.calibration")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["calibrate-overfit", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
