"""``rcnn-kit grade``, ``rcnn-kit grade-all``, ``rcnn-kit autograder-zip`` and ``rcnn-kit calibrate-overfit``.

Registered through the ``rcnn_kit.commands`` entry-point group (see pyproject.toml).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autograder import calibration
from autograder.overfit_profile import add_grading_flags, choice_from_args, grading_argv
from autograder.runner import DEFAULT_CHECKS_DIR, DEFAULT_RUBRIC, load_rubric

#: Seconds a ``grade-all`` job may take beyond the sum of the rubric's group budgets.
GRADE_ALL_MARGIN_S = 300
#: Exit code for a bad command line (missing submission, bad flag value).
EXIT_USAGE = 2
#: Longest error text kept in a gradebook row.
CSV_ERROR_CHARS = 300


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the autograder's sub-commands to the ``rcnn-kit`` parser."""
    grade = subparsers.add_parser("grade", help="grade one submission and write a Gradescope results.json")
    grade.add_argument("submission", type=Path, help="zip or folder holding faster_rcnn/ (or the six .py files)")
    grade.add_argument("--results", type=Path, default=Path("results.json"), help="where to write results.json (default: ./results.json)")
    _common_grading_flags(grade)
    grade.set_defaults(func=_cmd_grade)

    grade_all = subparsers.add_parser("grade-all", help="grade every submission in a folder into a CSV gradebook")
    grade_all.add_argument("submissions_dir", type=Path, help="folder with one zip or folder per submission")
    grade_all.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    grade_all.add_argument("--out", type=Path, default=Path("gradebook.csv"), help="CSV file to write (default gradebook.csv)")
    grade_all.add_argument("--results-dir", type=Path, default=None, help="also keep each results.json here (default: not kept)")
    _common_grading_flags(grade_all)
    grade_all.set_defaults(func=_cmd_grade_all)

    bundle = subparsers.add_parser("autograder-zip", help="build dist/autograder.zip for Gradescope")
    bundle.add_argument("--out", type=Path, default=Path("dist/autograder.zip"), help="zip to write (default dist/autograder.zip)")
    bundle.add_argument("--overfit-data", type=Path, default=None, help="overfit subset folder to bundle (default: data/overfit_subset if present)")
    bundle.set_defaults(func=_cmd_autograder_zip)

    calibration.register(subparsers)


def _common_grading_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-overfit", action="store_true", help="do not run the overfit smoke test")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where student code runs (default auto)")
    extra = parser.add_argument_group("instructor/testing options")
    extra.add_argument("--rubric", type=Path, default=DEFAULT_RUBRIC, help="rubric file (default: autograder/rubric.toml)")
    extra.add_argument("--checks", type=Path, default=DEFAULT_CHECKS_DIR, help="hidden checks folder")
    extra.add_argument("--reference", type=Path, default=None, help="reference faster_rcnn folder")
    extra.add_argument("-k", dest="keyword", default=None, help="only run checks matching this pytest -k expression")
    extra.add_argument("--unprivileged", action="store_true", help="never switch user, even as root (laptop mode)")
    extra.add_argument("--memory-mb", type=int, default=None, help="memory limit of each sandboxed child")
    add_grading_flags(extra)


def _grading_argv(args: argparse.Namespace) -> list[str]:
    """The flags of ``args`` that ``grade-all`` passes on to each ``grade``."""
    argv = ["--device", args.device, "--rubric", str(args.rubric), "--checks", str(args.checks)]
    if args.skip_overfit:
        argv.append("--skip-overfit")
    if args.reference is not None:
        argv += ["--reference", str(args.reference)]
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.unprivileged:
        argv.append("--unprivileged")
    if args.memory_mb is not None:
        argv += ["--memory-mb", str(args.memory_mb)]
    return argv + grading_argv(args)


def _cmd_grade(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from autograder.grading import GradeOptions, format_table, grade

    options = GradeOptions(
        submission=args.submission, results=args.results, device=args.device, skip_overfit=args.skip_overfit,
        checks_dir=args.checks, rubric=args.rubric, unprivileged=args.unprivileged, keyword=args.keyword,
        overfit=choice_from_args(args),
    )
    if args.reference is not None:
        options.reference_dir = args.reference
    if args.memory_mb is not None:
        if args.memory_mb < 1024:
            raise ValueError(f"--memory-mb: at least 1024 is needed to import torch, got {args.memory_mb}")
        options.limits = replace(options.limits, memory_mb=args.memory_mb)
    try:
        results, code = grade(options)
    except FileNotFoundError as exc:
        print(f"rcnn-kit grade: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_table(results))
    print(f"\nwrote {args.results}")
    return code


def _grade_one(submission: Path, results: Path, argv: list[str], timeout_s: float) -> dict[str, Any]:
    """Grade one submission in its own process; returns its results dict or {"error": ...}."""
    cmd = [sys.executable, "-m", "autograder", "grade", str(submission), "--results", str(results), *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"grading took longer than {timeout_s:.0f} s"}
    try:
        data = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        tail = (proc.stderr or proc.stdout)[-CSV_ERROR_CHARS:]
        return {"error": f"no results.json (exit {proc.returncode}): {exc}; {tail}"}
    if proc.returncode != 0:
        data["error"] = f"grader exit code {proc.returncode} (infrastructure error; see the instructor log)"
    return data


def _cmd_grade_all(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs: expected a positive number, got {args.jobs}")
    if not args.submissions_dir.is_dir():
        print(f"rcnn-kit grade-all: error: submissions folder {args.submissions_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    rubric = load_rubric(args.rubric)
    submissions = sorted(p for p in args.submissions_dir.iterdir() if not p.name.startswith("."))
    timeout_s = sum(e.timeout_s for e in rubric) + GRADE_ALL_MARGIN_S
    argv = _grading_argv(args)
    with tempfile.TemporaryDirectory(prefix="rcnn-grade-all-") as tmp:
        results_dir = args.results_dir or Path(tmp)
        results_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {
                sub: pool.submit(_grade_one, sub, results_dir / f"{sub.name}.results.json", argv, timeout_s)
                for sub in submissions
            }
            rows = []
            for sub, future in futures.items():
                try:
                    data = future.result()
                except Exception as exc:  # one bad submission never stops the batch
                    data = {"error": f"{type(exc).__name__}: {exc}"}
                rows.append(_gradebook_row(sub.name, data, [e.id for e in rubric]))
                print(f"{sub.name}: {rows[-1]['total']} {rows[-1]['error']}".rstrip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["submission", "total", *[e.id for e in rubric], "error"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out} ({len(rows)} submissions)")
    return 0


def _gradebook_row(name: str, data: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"submission": name, "total": "", "error": str(data.get("error", ""))[:CSV_ERROR_CHARS]}
    if "tests" in data:
        row["total"] = data.get("score", "")
        by_id = {t["tags"][0]: t["score"] for t in data["tests"] if t.get("tags")}
        for rid in ids:
            row[rid] = by_id.get(rid, "")
    return row


def _cmd_autograder_zip(args: argparse.Namespace) -> int:
    from autograder.gradescope_zip import build_autograder_zip

    path = build_autograder_zip(args.out, overfit_data=args.overfit_data)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0
