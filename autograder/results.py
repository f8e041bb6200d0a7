"""Build, validate and write Gradescope's results.json (the only writer of that file).

Format (Gradescope autograder specification)::

    {"score": 42.0, "execution_time": 81.2, "output": "...", "visibility": "visible",
     "stdout_visibility": "hidden",
     "tests": [{"name": "IoU (iou.iou)", "score": 6.0, "max_score": 6.0, "status": "passed",
                "output": "8/8 cases passed", "visibility": "visible", "tags": ["iou"]}, ...]}

One visible test per rubric entry (``tags`` holds its rubric id), plus one hidden
"Instructor log" test (max 0) with the captured student output, sandbox facts and grader
errors. :func:`write_results` validates before writing and writes atomically (temporary
file + rename), so a reader never sees a partial or invalid file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from autograder.runner import CheckRun, GroupResult

#: Allowed values of a ``visibility`` field.
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
#: Allowed values of a test's ``status`` field.
STATUSES = ("passed", "failed")
#: Name of the hidden, instructor-only test entry.
INSTRUCTOR_LOG = "Instructor log (hidden from students)"
#: Most distinct failure lines shown per rubric entry.
MAX_FAILURE_LINES = 8
#: Longest ``output`` field of one entry (characters).
MAX_OUTPUT_CHARS = 20_000
#: Score tolerance when comparing sums (points are floats).
SCORE_EPS = 1e-9


class ResultsError(ValueError):
    """A results dictionary that Gradescope would not accept."""


def group_entry(group: GroupResult) -> dict[str, Any]:
    """The visible Gradescope test entry of one rubric group."""
    entry = group.entry
    if group.skipped_reason is not None:
        output = group.skipped_reason
    elif group.not_run_reason is not None:
        output = group.not_run_reason + (f" ({group.passed}/{group.counted} cases had run)" if group.counted else "")
    elif group.counted == 0:
        output = "no checks ran for this part"
    else:
        lines = [f"{group.passed}/{group.counted} cases passed"]
        if group.zero_reason is not None:
            lines[0] += f"; 0 points: {group.zero_reason}"
        distinct: list[str] = []
        for failure in group.failures:
            if failure not in distinct:
                distinct.append(failure)
        lines += [f"- {line}" for line in distinct[:MAX_FAILURE_LINES]]
        if len(distinct) > MAX_FAILURE_LINES:
            lines.append(f"- ... and {len(distinct) - MAX_FAILURE_LINES} more")
        output = "\n".join(lines)
    score = round(group.score, 6)
    test = {
        "name": entry.name, "score": score, "max_score": entry.points,
        "status": "passed" if group.counted and group.failed == 0 and group.skipped_reason is None
        and group.not_run_reason is None and group.zero_reason is None else "failed",
        "output": _clip(output), "visibility": "visible", "tags": [entry.id],
    }
    if group.feedback_md:  # Markdown written by the grader (e.g. the overfit loss curve and detections)
        test["output"] = _clip("\n\n".join([output, *group.feedback_md]))
        test["output_format"] = "md"
    return test


def build_results(
    run: CheckRun | None,
    problems: list[str],
    *,
    infrastructure_error: str | None = None,
    max_points: dict[str, tuple[str, float]] | None = None,
    execution_time: float = 0.0,
    notes: list[str] | None = None,
    not_graded_reason: str | None = None,
) -> dict[str, Any]:
    """Assemble the results dictionary.

    Args:
        run: the checks' outcome, or None when they could not run.
        problems: student-visible notes about the submission (missing files, refused entries).
        infrastructure_error: a grader failure; everything scores 0 and the message says so.
        max_points: rubric id -> (name, points), used to list every entry at 0 when ``run`` is None.
        execution_time: seconds the grading took.
        notes: lines for the top of the instructor log (isolation mode, device, deadline).
        not_graded_reason: what every entry shows when ``run`` is None (default: says why from
            ``infrastructure_error``).

    Returns:
        A dictionary that passes :func:`validate_results`.
    """
    tests: list[dict[str, Any]] = []
    log: list[str] = list(notes or [])
    if run is not None:
        tests = [group_entry(g) for g in run.groups]
        for group in run.groups:
            facts = ", ".join(f"{k}={v}" for k, v in sorted(group.facts.items()))
            log.append(f"== {group.entry.id}: {group.passed} passed, {group.failed} failed ({facts})")
            log += group.instructor_notes
            if group.student_output:
                log.append(group.student_output)
        log += [f"ignored {n} check(s) with rubric id {rid!r} (not in the rubric)" for rid, n in run.ignored.items()]
        log += [f"check collection error: {line}" for line in run.collect_errors]
    elif max_points:
        reason = not_graded_reason or "not graded: " + (
            "internal grader error" if infrastructure_error else "the submission could not be used")
        tests = [
            {"name": name, "score": 0.0, "max_score": points, "status": "failed", "output": reason,
             "visibility": "visible", "tags": [rid]}
            for rid, (name, points) in max_points.items()
        ]
    summary = []
    if problems:
        summary.append("Problems with your submission:\n" + "\n".join(f"- {p}" for p in problems))
    if infrastructure_error is not None:
        summary.append("The autograder itself failed on this submission (not your fault); your instructor has been told. Score set to 0 until it is re-run.")
        log.insert(0, f"INFRASTRUCTURE ERROR:\n{infrastructure_error}")
        for test in tests:
            test["score"] = 0.0
    tests.append({"name": INSTRUCTOR_LOG, "score": 0.0, "max_score": 0.0, "output": _clip("\n".join(log) or "(empty)"),
                  "visibility": "hidden"})
    total = 0.0 if infrastructure_error is not None else sum(t["score"] for t in tests)
    return {
        "score": round(total, 6), "execution_time": round(execution_time, 3), "output": _clip("\n\n".join(summary)),
        "visibility": "visible", "stdout_visibility": "hidden", "tests": tests,
    }


def validate_results(results: Any) -> None:
    """Raise :class:`ResultsError` unless ``results`` is valid Gradescope results JSON."""
    if not isinstance(results, dict):
        raise ResultsError(f"results: expected a dict, got {type(results).__name__}")
    _number(results, "score", "results")
    _number(results, "execution_time", "results")
    for key in ("visibility", "stdout_visibility"):
        if results.get(key) not in VISIBILITIES:
            raise ResultsError(f"results[{key!r}]: expected one of {VISIBILITIES}, got {results.get(key)!r}")
    if not isinstance(results.get("output", ""), str):
        raise ResultsError("results['output']: expected a string")
    tests = results.get("tests")
    if not isinstance(tests, list):
        raise ResultsError("results['tests']: expected a list")
    for i, test in enumerate(tests):
        where = f"results['tests'][{i}]"
        if not isinstance(test, dict) or not isinstance(test.get("name"), str) or not test["name"]:
            raise ResultsError(f"{where}: expected an object with a non-empty 'name'")
        _number(test, "score", where)
        _number(test, "max_score", where)
        if test["score"] < -SCORE_EPS or test["score"] > test["max_score"] + SCORE_EPS:
            raise ResultsError(f"{where}: score {test['score']} outside [0, max_score={test['max_score']}]")
        if test.get("visibility") not in VISIBILITIES:
            raise ResultsError(f"{where}['visibility']: got {test.get('visibility')!r}")
        if "status" in test and test["status"] not in STATUSES:
            raise ResultsError(f"{where}['status']: got {test['status']!r}")
        if not isinstance(test.get("output", ""), str):
            raise ResultsError(f"{where}['output']: expected a string")
        tags = test.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ResultsError(f"{where}['tags']: expected a list of strings")
    json.dumps(results, allow_nan=False)  # must serialise as strict JSON


def write_artifacts(run: CheckRun | None, folder: str | Path) -> list[Path]:
    """Write the checks' artifacts (e.g. the overfit pictures) into ``folder``; returns their paths.

    Names are ``<rubric id>_<file name>``; only the grader's own checks produce artifacts.
    """
    written: list[Path] = []
    if run is None:
        return written
    for group in run.groups:
        for name, data in group.artifacts:
            path = Path(folder) / f"{group.entry.id}_{Path(name).name}"  # base name only
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
    return written


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    """Validate ``results`` and write it to ``path`` atomically; returns the path.

    Raises:
        ResultsError: ``results`` is invalid (nothing is written).
    """
    validate_results(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _number(obj: dict[str, Any], key: str, where: str) -> None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultsError(f"{where}[{key!r}]: expected a finite number, got {value!r}")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT_CHARS else text[: MAX_OUTPUT_CHARS - 40] + "\n[... output truncated]"
