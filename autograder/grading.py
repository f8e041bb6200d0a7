"""Grade one submission end to end: unpack, run the checks in sandboxes, write results.json.

:func:`grade` never raises for anything a submission can do: a grader failure becomes an
"infrastructure error" results.json (score 0, explanation for the instructor), and the
file is written only after every sandboxed process is gone.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder import isolation
from rcnn_kit.course import REFERENCE_DIR, rmtree
from autograder.overfit_profile import OverfitChoice
from autograder.results import build_results, write_artifacts, write_results
from autograder.runner import AUTOGRADER_DIR, DEFAULT_CHECKS_DIR, DEFAULT_RUBRIC, GradeSettings, load_rubric, run_checks
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
    overfit: OverfitChoice = field(default_factory=OverfitChoice)  # --overfit-profile/-data/--force-overfit-profile


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``.

    Raises:
        ValueError: ``device`` is not auto, cpu or cuda, or cuda is asked for without a GPU.
    """
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device")
    return device


def secret_paths(options: GradeOptions) -> list[Path]:
    """Folders the sandbox user must not read: the kit's source tree parts, reference, checks, results.

    A folder that contains the Python installation or the temp dir is never listed (the
    child needs them); in a source checkout every other top-level folder is listed.
    """
    needed = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(os.path.realpath(sys.executable)),
              Path(tempfile.gettempdir()).resolve()]
    candidates = [AUTOGRADER_DIR, options.reference_dir.resolve().parent, options.checks_dir.resolve(),
                  options.rubric.resolve().parent, options.results.resolve().parent]
    if (SOURCE_ROOT / "pyproject.toml").exists():
        candidates += [p for p in SOURCE_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    safe = []
    for path in candidates:
        if any(n == path or path in n.parents for n in needed) or path in safe:
            continue
        safe.append(path)
    return safe


def grade(options: GradeOptions) -> tuple[dict[str, Any], int]:
    """Grade ``options.submission`` and write ``options.results``.

    Returns:
        (the results dictionary written, exit code: 0, or :data:`EXIT_INFRASTRUCTURE`).

    Raises:
        FileNotFoundError: the submission path does not exist (nothing is written).
    """
    start = time.monotonic()
    if not options.submission.exists() and not options.submission.is_symlink():
        raise FileNotFoundError(f"submission {options.submission} does not exist")
    scratch = Path(tempfile.mkdtemp(prefix="rcnn-grade-"))
    os.chmod(scratch, 0o711)  # the sandbox user may pass through to its own folders only
    problems: list[str] = []
    max_points: dict[str, tuple[str, float]] = {}
    try:
        max_points = {e.id: (e.name, e.points) for e in load_rubric(options.rubric)}
        device = resolve_device(options.device)
        identity = isolation.sandbox_identity(unprivileged=options.unprivileged)
        if identity.privileged:
            isolation.protect_paths(secret_paths(options))
        submission = load_submission(options.submission, scratch / "submission")
        problems = submission.problems
        settings = GradeSettings(
            reference_dir=options.reference_dir, checks_dir=options.checks_dir, rubric_path=options.rubric,
            device=device, skip_overfit=options.skip_overfit, limits=options.limits, identity=identity,
            keyword=options.keyword, overfit=options.overfit,
        )
        children = scratch / "children"
        children.mkdir()
        run = run_checks(settings, submission.found, children)
        if run.pytest_exit_code not in (0, 1, 5) or run.collect_errors:
            raise RuntimeError(f"pytest exited with code {run.pytest_exit_code}; collection errors: {run.collect_errors}")
        results = build_results(run, problems, execution_time=time.monotonic() - start)
        for path in write_artifacts(run, options.results.resolve().parent / ARTIFACTS_DIR):
            print(f"wrote {path}")
        code = 0
    except Exception:
        results = build_results(None, problems, infrastructure_error=traceback.format_exc(),
                                max_points=max_points, execution_time=time.monotonic() - start)
        code = EXIT_INFRASTRUCTURE
    finally:
        rmtree(scratch)
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
