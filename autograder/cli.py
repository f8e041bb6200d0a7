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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder import calibration
from autograder.overfit_profile import add_grading_flags, choice_from_args, grading_argv
from autograder.runner import DEFAULT_CHECKS_DIR, DEFAULT_RUBRIC, load_rubric

if TYPE_CHECKING:
    from autograder.grading import GradeOptions

#: Seconds a ``grade-all`` job may take beyond the grading deadline (start-up, torch import).
GRADE_ALL_MARGIN_S = 120
#: Exit code for a bad command line (missing submission, bad flag value).
EXIT_USAGE = 2
#: Exit code of ``grade-all`` when any submission was not graded normally.
EXIT_BATCH_ERRORS = 3
#: Name of the per-submission log file ``grade-all`` writes.
GRADER_LOG = "grader.log"
#: The folder holding this ``autograder`` package (what ``grade-all``'s workers import).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the autograder's sub-commands to the ``rcnn-kit`` parser."""
    grade = subparsers.add_parser("grade", help="grade one submission and write a Gradescope results.json")
    grade.add_argument("submission", type=Path, help="zip or folder holding faster_rcnn/ (or the six .py files)")
    grade.add_argument("--results", type=Path, default=Path("results.json"), help="where to write results.json (default: ./results.json)")
    grade.add_argument("--artifacts-dir", type=Path, default=None, help="folder for the pictures (default: artifacts/ beside results.json)")
    grade.add_argument(
        "--explain", action="store_true",
        help="instructors: also write explain.md and explain_tensors.pt beside results.json (per failed case the "
             "inputs, expected and received values; hidden data, never give them to students)",
    )
    _common_grading_flags(grade)
    grade.set_defaults(func=_cmd_grade)

    grade_all = subparsers.add_parser("grade-all", help="grade every submission in a folder into a CSV gradebook")
    grade_all.add_argument("submissions_dir", type=Path, help="folder with one zip or folder per submission")
    grade_all.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    grade_all.add_argument("--out", type=Path, default=Path("gradebook.csv"), help="CSV file to write (default gradebook.csv)")
    grade_all.add_argument("--results-dir", type=Path, default=None,
                           help="folder for each submission's results.json, pictures and grader.log "
                           "(default: <out name>_results/ beside the CSV)")
    grade_all.add_argument("--similarity", action="store_true",
                           help="after grading, write a similarity report into RESULTS_DIR/similarity; never affects grades")
    _common_grading_flags(grade_all)
    grade_all.set_defaults(func=_cmd_grade_all)

    bundle = subparsers.add_parser("autograder-zip", help="build dist/autograder.zip for Gradescope")
    bundle.add_argument("--out", type=Path, default=Path("dist/autograder.zip"), help="zip to write (default dist/autograder.zip)")
    bundle.add_argument("--overfit-data", type=Path, default=None, help="overfit subset folder to bundle (default: data/overfit_subset if present)")
    bundle.set_defaults(func=_cmd_autograder_zip)

    similarity = subparsers.add_parser(
        "similarity", help="similarity report across a batch of submissions (an aid for a person; never affects grades)"
    )
    similarity.add_argument("submissions_dir", type=Path, help="folder with one zip or folder per submission")
    similarity.add_argument("--against", type=Path, default=None, help="folder of known public solutions (one zip or subfolder each)")
    similarity.add_argument("--out", type=Path, default=Path("similarity"), help="folder for similarity.csv and similarity.html (default ./similarity)")
    similarity.add_argument("--threshold", type=float, default=None, help="list pairs whose score is at least this, in [0, 1] (default 0.5)")
    similarity.set_defaults(func=_cmd_similarity)
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
    extra.add_argument("--require-isolation", action="store_true",
                       help="refuse to grade when bubblewrap cannot isolate student code (instead of the weaker fallback)")
    extra.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                       help="wall clock for one submission, results.json included (default: the rubric's [grading] deadline_s)")
    add_grading_flags(extra)


def _grading_argv(args: argparse.Namespace) -> list[str]:
    """The flags of ``args`` that ``grade-all`` passes on to each ``grade``."""
    argv = ["--device", args.device, "--rubric", str(args.rubric.resolve()), "--checks", str(args.checks.resolve())]
    if args.skip_overfit:
        argv.append("--skip-overfit")
    if args.reference is not None:
        argv += ["--reference", str(args.reference.resolve())]
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.unprivileged:
        argv.append("--unprivileged")
    if args.memory_mb is not None:
        argv += ["--memory-mb", str(args.memory_mb)]
    if args.require_isolation:
        argv.append("--require-isolation")
    if args.deadline is not None:
        argv += ["--deadline", str(args.deadline)]
    return argv + grading_argv(args)


def _grade_options(args: argparse.Namespace) -> "GradeOptions":
    from dataclasses import replace

    from autograder.grading import GradeOptions

    options = GradeOptions(
        submission=args.submission, results=args.results, device=args.device, skip_overfit=args.skip_overfit,
        checks_dir=args.checks, rubric=args.rubric, unprivileged=args.unprivileged, keyword=args.keyword,
        require_isolation=args.require_isolation, deadline_s=args.deadline, artifacts_dir=args.artifacts_dir,
        explain=args.explain,
        overfit=choice_from_args(args),
    )
    if args.reference is not None:
        options.reference_dir = args.reference
    if args.memory_mb is not None:
        if args.memory_mb < 1024:
            raise ValueError(f"--memory-mb: at least 1024 is needed to import torch, got {args.memory_mb}")
        options.limits = replace(options.limits, memory_mb=args.memory_mb)
    return options


def _cmd_grade(args: argparse.Namespace) -> int:
    from autograder.grading import format_table, grade

    try:
        results, code = grade(_grade_options(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"rcnn-kit grade: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_table(results))
    if code != 0:  # the instructor's full story (hidden from students in results.json): grade-all keeps it in grader.log
        from autograder.results import INSTRUCTOR_LOG

        log = next((t.get("output", "") for t in results["tests"] if t.get("name") == INSTRUCTOR_LOG), "")
        print(f"\n{INSTRUCTOR_LOG}:\n{log}", file=sys.stderr)
    print(f"\nwrote {args.results}")
    return code


#: Python source that runs ``python -m autograder`` from the folder holding *this* autograder
#: package, whatever the working directory holds (a course folder often has an ``autograder/``).
_GRADE_LAUNCH = "import sys; sys.path.insert(0, sys.argv.pop(1)); from autograder.__main__ import main; sys.exit(main())"


def _grade_one(submission: Path, folder: Path, argv: list[str], timeout_s: float) -> dict[str, Any]:
    """Grade one submission in its own interpreter and folder.

    Writes ``folder/results.json``, ``folder/artifacts/`` and ``folder/grader.log`` (the
    grader's whole output: the instructor's place to look). Returns the results dict, with
    ``"error"`` set when grading did not end normally.
    """
    folder = folder.resolve()  # the grader runs in a folder of its own
    folder.mkdir(parents=True, exist_ok=True)
    results, log = folder / "results.json", folder / GRADER_LOG
    results.unlink(missing_ok=True)
    cmd = [sys.executable, "-I", "-c", _GRADE_LAUNCH, str(PACKAGE_ROOT), "grade", str(submission.resolve()),
           "--results", str(results), "--artifacts-dir", str(folder / "artifacts"), *argv]
    with tempfile.TemporaryDirectory(prefix="rcnn-grade-cwd-") as cwd, open(log, "w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, timeout=timeout_s,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    try:
        data = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        data = {"error": f"no valid results.json ({exc})"}
    if code is None:
        data["error"] = f"grading took longer than {timeout_s:.0f} s and was stopped"
    elif code != 0 and "error" not in data:
        meaning = {3: "infrastructure error", 4: "deadline reached before every group ran"}.get(code, "grader crashed")
        data["error"] = f"grader exit code {code} ({meaning})"
    if "error" in data:
        data["error"] += f"; full log: {log}"
    return data


def _cmd_grade_all(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from autograder.runner import load_deadline

    if args.jobs < 1:
        raise ValueError(f"--jobs: expected a positive number, got {args.jobs}")
    if not args.submissions_dir.is_dir():
        print(f"rcnn-kit grade-all: error: submissions folder {args.submissions_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    rubric = load_rubric(args.rubric)
    submissions = sorted(p for p in args.submissions_dir.iterdir() if not p.name.startswith("."))
    deadline = args.deadline if args.deadline is not None else load_deadline(args.rubric)
    timeout_s = deadline + GRADE_ALL_MARGIN_S
    argv = _grading_argv(args)
    results_dir = args.results_dir or args.out.parent / f"{args.out.stem}_results"
    results_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool, tqdm(total=len(submissions), unit="submission") as bar:
        futures = {pool.submit(_grade_one, sub, results_dir / results_folder_name(sub), argv, timeout_s): sub for sub in submissions}
        for future in as_completed(futures):
            sub = futures[future]
            try:
                data = future.result()
            except Exception as exc:  # one bad submission never stops the batch; reported below
                data = {"error": f"{type(exc).__name__}: {exc}"}
            rows[sub.name] = _gradebook_row(sub.name, data, [e.id for e in rubric])
            bar.set_postfix_str(f"{sub.name}: {rows[sub.name]['total'] or 'ERROR'}")
            bar.update()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["submission", "total", *[e.id for e in rubric], "error"])
        writer.writeheader()
        writer.writerows(rows[s.name] for s in submissions)
    failed = [name for name, row in rows.items() if row["error"]]
    print(f"wrote {args.out} ({len(rows)} submissions); results, pictures and logs in {results_dir}/<submission>/")
    for name in sorted(failed):
        print(f"  {name}: {rows[name]['error']}", file=sys.stderr)
    similarity_code = 0
    if args.similarity:  # an aid for a person's judgement; never touches the gradebook above
        similarity_code = _cmd_similarity(argparse.Namespace(
            submissions_dir=args.submissions_dir, against=None, out=results_dir / "similarity", threshold=None))
    if failed:
        print(f"rcnn-kit grade-all: {len(failed)} of {len(rows)} submissions were not graded normally (see above)",
              file=sys.stderr)
        return EXIT_BATCH_ERRORS
    return similarity_code


def results_folder_name(submission: Path) -> str:
    """A results folder name for ``submission`` (its file name without a .zip suffix)."""
    return submission.name[: -len(".zip")] if submission.name.lower().endswith(".zip") else submission.name


def _gradebook_row(name: str, data: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"submission": name, "total": "", "error": str(data.get("error", ""))}
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


def _cmd_similarity(args: argparse.Namespace) -> int:
    from autograder.similarity import DEFAULT_THRESHOLD, format_summary, run_similarity

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        print(f"rcnn-kit similarity: error: --threshold: expected a number in [0, 1], got {threshold}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = run_similarity(args.submissions_dir, args.out, against_dir=args.against, threshold=threshold)
    except FileNotFoundError as exc:
        print(f"rcnn-kit similarity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name != "copydetect":
            raise
        print("rcnn-kit similarity: error: copydetect is not installed; pip install -e '.[similarity]'", file=sys.stderr)
        return EXIT_USAGE
    print(format_summary(report))
    return 0
