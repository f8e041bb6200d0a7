"""Grade one submission end to end: unpack, run the checks in sandboxes, write results.json.

:func:`grade` never raises for anything a submission can do: a grader failure becomes an
"infrastructure error" results.json (score 0, explanation for the instructor), and the
file is written only after every sandboxed process is gone.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder import isolation
from rcnn_kit.course import REFERENCE_DIR, rmtree
from autograder.explain import records_of, write_explain
from autograder.overfit_profile import OverfitChoice
from autograder.results import build_results, write_artifacts, write_results
from autograder.runner import (
    AUTOGRADER_DIR, DEFAULT_CHECKS_DIR, DEFAULT_RUBRIC, NOT_RUN_TEXT, GradeSettings, load_deadline, load_rubric, run_checks,
)
from autograder.sandbox import SandboxLimits
from autograder.intake import load_submission

#: The source checkout holding ``autograder/`` (when it is one: it has a pyproject.toml).
SOURCE_ROOT = AUTOGRADER_DIR.parent
#: The reference package in a source checkout (and in the Gradescope bundle, which keeps its layout).
DEFAULT_REFERENCE = SOURCE_ROOT / REFERENCE_DIR
#: Folder beside results.json for the checks' pictures (loss curve, detections).
ARTIFACTS_DIR = "artifacts"

#: Exit code of ``rcnn-kit grade`` when the grader itself failed (results.json still written).
EXIT_INFRASTRUCTURE = 3
#: Exit code when the deadline stopped grading before every group ran (results.json still written).
EXIT_DEADLINE = 4
#: Seconds before the deadline by which every sandbox call must have ended (time to tear down and write).
RESULTS_MARGIN_S = 15.0
#: Seconds before the deadline at which the watchdog writes results.json itself and exits.
WATCHDOG_MARGIN_S = 3.0


@dataclass
class GradeOptions:
    """Options of one grading run (the ``rcnn-kit grade`` flags)."""

    submission: Path
    results: Path = Path("results.json")
    device: str = "auto"
    skip_overfit: bool = False
    reference_dir: Path = DEFAULT_REFERENCE
    checks_dir: Path = DEFAULT_CHECKS_DIR
    rubric: Path = DEFAULT_RUBRIC
    unprivileged: bool = False
    keyword: str | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    require_isolation: bool = False  # refuse to grade when bubblewrap cannot confine children
    deadline_s: float | None = None  # default: the rubric's [grading] deadline_s
    artifacts_dir: Path | None = None  # default: artifacts/ beside results.json
    explain: bool = False  # also write explain.md + explain_tensors.pt beside results.json (instructor only)
    overfit: OverfitChoice = field(default_factory=OverfitChoice)  # --overfit-profile/-data/--force-overfit-profile


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu`` (:func:`rcnn_kit.engine.utils.resolve_device`).

    Raises:
        ValueError: ``device`` is not auto, cpu or cuda, or cuda is asked for without a GPU.
    """
    from rcnn_kit.devices import resolve_device as resolve

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu or cuda, got {device!r}")
    return resolve(device).type


def secret_paths(options: GradeOptions) -> list[Path]:
    """What a child must never see: reference, hidden checks, rubric, results, the course
    checkout and the folder the submission came from (other students' files).

    bubblewrap mounts none of them; these are the paths it must also cover when they lie
    inside a mounted runtime folder (see :func:`autograder.bubblewrap.build_argv`).
    """
    paths = [options.reference_dir, options.checks_dir, options.rubric.parent, options.results.parent,
             AUTOGRADER_DIR, options.submission.parent]
    if (SOURCE_ROOT / "pyproject.toml").exists():
        paths.append(SOURCE_ROOT)
    unique: list[Path] = []
    for path in paths:
        resolved = Path(os.path.abspath(path))
        if resolved not in unique and resolved != Path("/"):
            unique.append(resolved)
    return unique


class _Deadline:
    """Writes a valid results.json and ends the grader if grading overruns its deadline.

    Every sandbox call already stops at :attr:`GradeSettings.deadline`; this is the last
    line for the grader's own work, so a platform that kills the container at its limit
    always finds results.json.
    """

    def __init__(self, at_s: float, results: Path, max_points: dict[str, tuple[str, float]], start: float) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max(at_s - (time.monotonic() - start), 0.0), self._fire, args=(results, max_points, start))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, results: Path, max_points: dict[str, tuple[str, float]], start: float) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            data = build_results(None, [], infrastructure_error="the grading deadline was reached before grading ended",
                                 max_points=max_points, execution_time=time.monotonic() - start,
                                 not_graded_reason=NOT_RUN_TEXT)
            write_results(data, results)
            print(f"rcnn-kit grade: deadline reached; wrote {results}", file=sys.stderr)
            os._exit(EXIT_DEADLINE)  # children die with us (--die-with-parent / parent-death signal)

    def finish(self) -> bool:
        """Stop the watchdog; False when it already fired (the caller must not write)."""
        with self._lock:
            self._timer.cancel()
            done, self._done = self._done, True
            return not done


def grade(options: GradeOptions) -> tuple[dict[str, Any], int]:
    """Grade ``options.submission`` and write ``options.results`` before the deadline.

    Returns:
        (the results dictionary written, exit code: 0, or :data:`EXIT_INFRASTRUCTURE`).

    Raises:
        FileNotFoundError: the submission path does not exist (nothing is written).
    """
    start = time.monotonic()
    if not options.submission.exists() and not options.submission.is_symlink():
        raise FileNotFoundError(f"submission {options.submission} does not exist")
    scratch = Path(tempfile.mkdtemp(prefix="rcnn-grade-"))
    os.chmod(scratch, 0o711)  # fallback mode: the sandbox user may pass through to its own folders only
    problems: list[str] = []
    notes: list[str] = []
    max_points: dict[str, tuple[str, float]] = {}
    watchdog: _Deadline | None = None
    try:
        max_points = {e.id: (e.name, e.points) for e in load_rubric(options.rubric)}
        deadline_s = options.deadline_s if options.deadline_s is not None else load_deadline(options.rubric)
        if deadline_s <= RESULTS_MARGIN_S:
            raise ValueError(f"deadline: at least {RESULTS_MARGIN_S:g} s are needed, got {deadline_s:g}")
        watchdog = _Deadline(deadline_s - WATCHDOG_MARGIN_S, options.results, max_points, start)
        device = resolve_device(options.device)
        identity = isolation.sandbox_identity(unprivileged=options.unprivileged)
        confinement = isolation.choose_confinement(identity, require=options.require_isolation,
                                                   secrets=tuple(secret_paths(options)))
        notes += [confinement.describe(), f"device: {device}; deadline: {deadline_s:g} s; identity: "
                  + (f"uid {identity.uid}" if identity.privileged else "the grader's own user")]
        submission = load_submission(options.submission, scratch / "submission")
        problems = submission.problems
        settings = GradeSettings(
            reference_dir=options.reference_dir, checks_dir=options.checks_dir, rubric_path=options.rubric,
            device=device, skip_overfit=options.skip_overfit, limits=options.limits, identity=identity,
            keyword=options.keyword, confinement=confinement, deadline=start + deadline_s - RESULTS_MARGIN_S,
            overfit=options.overfit,
        )
        children = scratch / "children"
        children.mkdir()
        run = run_checks(settings, submission.found, children)
        if run.pytest_exit_code not in (0, 1, 5) or run.collect_errors:
            raise RuntimeError(f"pytest exited with code {run.pytest_exit_code}; collection errors: {run.collect_errors}")
        results = build_results(run, problems, execution_time=time.monotonic() - start, notes=notes)
        if options.explain:
            title = f"Submission: {options.submission} (device {device})"
            for path in write_explain(records_of(run.groups), options.results.resolve().parent, title):
                print(f"wrote {path}")
        artifacts = options.artifacts_dir or options.results.resolve().parent / ARTIFACTS_DIR
        for path in write_artifacts(run, artifacts):
            print(f"wrote {path}")
        code = EXIT_DEADLINE if any(g.not_run_reason for g in run.groups) else 0
    except Exception as exc:
        refused = isinstance(exc, isolation.IsolationUnavailable)
        results = build_results(None, problems, infrastructure_error=str(exc) if refused else traceback.format_exc(),
                                max_points=max_points, execution_time=time.monotonic() - start, notes=notes,
                                not_graded_reason="not graded: the grading machine cannot isolate student code; your instructor has been told" if refused else None)
        code = EXIT_INFRASTRUCTURE
    finally:
        rmtree(scratch)
    if watchdog is None or watchdog.finish():
        write_results(results, options.results)
    return results, code


def format_table(results: dict[str, Any]) -> str:
    """A readable table of the results: test, score, max, one-line reason."""
    rows = [("test", "score", "max", "reason")]
    for test in results["tests"]:
        if test.get("visibility") == "hidden":
            continue
        lines = test.get("output", "").splitlines()
        reason = next((ln.removeprefix("- ") for ln in lines if ln.startswith("- ")), lines[0] if lines else "")
        if test.get("status") == "passed":
            reason = lines[0] if lines else "passed"
        rows.append((test["name"], f"{test['score']:.2f}", f"{test['max_score']:.2f}", reason[:100]))
    total_max = sum(t["max_score"] for t in results["tests"])
    rows.append(("TOTAL", f"{results['score']:.2f}", f"{total_max:.2f}", ""))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(3)]
    out = [f"{r[0][:60]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows]
    if results.get("output"):
        out += ["", results["output"]]
    return "\n".join(out)
