"""Hostile submissions (tests/autograder/hostile/) never beat an honest empty stub.

The whole corpus, the stub, the reference and two broken submissions are graded in one
``grade-all --jobs 2`` batch (each grade its own process, as in production) with a small
IoU + NMS rubric; every test below then inspects that batch's results.json files.
"""

from __future__ import annotations

import csv
import re
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest

from autograder import bubblewrap
from autograder.cli import results_folder_name
from autograder.results import validate_results
from infra_helpers import (
    HOSTILE_DIR, IOU_NMS_RUBRIC, REFERENCE_DIR, copy_reference, hidden_log, load_json, make_stub, pid_alive,
    running_as_root, score_of, solution_lines, visible_text,
)

pytestmark = pytest.mark.slow

HOSTILE = sorted(p.name for p in HOSTILE_DIR.iterdir() if p.is_dir())
#: The fork_sleeper submission prints "SLEEPER <its process name>" (random per run).
SLEEPER_LINE = re.compile(r"SLEEPER (rcnnslp[0-9a-f]{8})")
#: Where reduce_object's payload would write, had the grader ever unpickled it.
REDUCE_MARKER = Path("/tmp/rcnn_kit_hostile_reduce_marker")
#: Why bubblewrap cannot isolate here (None when it can): read_reference then reads what the machine exposes.
NO_BWRAP = None if bubblewrap.availability(running_as_root())[0] else bubblewrap.availability(running_as_root())[1]
#: Upper bound of one submission's grading time with the small rubric (a 10 s and a 12 s group, each with up to 60 s of start-up).
MAX_GRADE_SECONDS = 150
#: Results files stay small whatever the student prints.
MAX_RESULTS_BYTES = 200_000


class Batch:
    def __init__(self, root: Path, rows: dict[str, dict[str, str]], results: dict[str, dict[str, Any]], seconds: float):
        self.root, self.rows, self.results, self.seconds = root, rows, results, seconds


@pytest.fixture(scope="module")
def batch() -> Iterator[Batch]:
    root = Path(tempfile.mkdtemp(prefix="rcnn-hostile-"))
    subs = root / "submissions"
    subs.mkdir()
    for name in HOSTILE:
        shutil.copytree(HOSTILE_DIR / name, subs / name)
    make_stub(subs / "stub")
    copy_reference(subs / "reference")
    # One group hangs, the next one is honest: the hang must not cost the honest group anything.
    shutil.copytree(HOSTILE_DIR / "infinite_loop", subs / "loop_then_honest_nms")
    shutil.copy(REFERENCE_DIR / "nms.py", subs / "loop_then_honest_nms" / "faster_rcnn" / "nms.py")
    (subs / "not_a_zip.zip").write_bytes(b"PK\x03\x04 truncated garbage")
    (subs / "empty").mkdir()
    rubric = root / "rubric.toml"
    rubric.write_text(IOU_NMS_RUBRIC)
    REDUCE_MARKER.unlink(missing_ok=True)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade-all", str(subs), "--jobs", "2", "--out", str(root / "gradebook.csv"),
         "--results-dir", str(root / "results"), "--rubric", str(rubric), "--device", "cpu", "--memory-mb", "4096"],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "RCNN_KIT_OFFLINE": "1"},
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]  # hostile code is the student's problem, never an infrastructure error
    with open(root / "gradebook.csv", newline="") as fh:
        rows = {row["submission"]: row for row in csv.DictReader(fh)}
    results = {name: load_json(root / "results" / results_folder_name(Path(name)) / "results.json") for name in rows}
    yield Batch(root, rows, results, seconds)
    shutil.rmtree(root, ignore_errors=True)


def test_every_submission_gets_a_row_and_a_valid_results_json(batch: Batch) -> None:
    expected = {*HOSTILE, "stub", "reference", "loop_then_honest_nms", "not_a_zip.zip", "empty"}
    assert set(batch.rows) == expected
    assert list(next(iter(batch.rows.values()))) == ["submission", "total", "iou", "nms", "error"]
    for name in expected:
        validate_results(batch.results[name])
        assert float(batch.rows[name]["total"]) == pytest.approx(batch.results[name]["score"])
        assert batch.results[name]["execution_time"] < MAX_GRADE_SECONDS


def test_reference_gets_full_marks_and_stub_does_not(batch: Batch) -> None:
    reference, stub = batch.results["reference"], batch.results["stub"]
    assert score_of(reference, "iou") == 6.0 and score_of(reference, "nms") == 7.0
    assert stub["score"] < 0.5 * reference["score"]
    assert "NotImplementedError" in visible_text(stub)


@pytest.mark.parametrize("name", ["not_a_zip.zip", "empty"])
def test_unusable_submissions_score_zero_with_a_reason(batch: Batch, name: str) -> None:
    results = batch.results[name]
    assert results["score"] == 0.0
    assert "no faster_rcnn modules found" in results["output"] or "not a readable zip" in results["output"]


def _skip_reading_attacks_without_bubblewrap(name: str) -> None:
    """The fallback (no bubblewrap) shows the child the host's files: the documented weaker mode."""
    if name == "read_reference" and NO_BWRAP is not None:
        pytest.skip(f"without bubblewrap ({NO_BWRAP}) the child reads whatever this machine leaves world-readable")


@pytest.mark.parametrize("name", HOSTILE)
def test_attack_never_beats_the_empty_stub(batch: Batch, name: str) -> None:
    _skip_reading_attacks_without_bubblewrap(name)
    results, stub = batch.results[name], batch.results["stub"]
    assert results["score"] <= stub["score"] + 1e-9
    for rid in ("iou", "nms"):
        assert score_of(results, rid) <= score_of(stub, rid) + 1e-9
    assert (batch.root / "results" / results_folder_name(Path(name)) / "results.json").stat().st_size < MAX_RESULTS_BYTES
    visible = visible_text(results)
    for module in ("iou", "nms"):
        for line in solution_lines(module):
            assert line not in visible, f"{name} leaked reference {module}.py to the student"


def test_a_hanging_group_does_not_stop_the_next_group(batch: Batch) -> None:
    results = batch.results["loop_then_honest_nms"]
    assert "time limit" in _iou_output(results)
    assert score_of(results, "nms") == 7.0


def _iou_output(results: dict[str, Any]) -> str:
    return next(t["output"] for t in results["tests"] if t.get("tags") == ["iou"])


@pytest.mark.parametrize(
    "name, reason",
    [
        ("exit_mid_check", "exited with status 0"),
        ("segfault", "SIGSEGV"),
        ("infinite_loop", "time limit"),
        ("memory_hog", "memory"),
        ("sys_exit_import", "SystemExit"),
        ("syntax_error", "SyntaxError"),
        ("reduce_object", "got Payload"),
        ("read_reference", "nothing readable"),
    ],
)
def test_failures_are_reported_with_a_clear_reason(batch: Batch, name: str, reason: str) -> None:
    _skip_reading_attacks_without_bubblewrap(name)
    assert reason in _iou_output(batch.results[name])


def test_planted_results_files_are_ignored(batch: Batch) -> None:
    results = batch.results["write_results"]
    assert "pwned" not in json.dumps(results)
    assert results["score"] <= batch.results["stub"]["score"]


@pytest.mark.skipif(not running_as_root(), reason="only root can hide the reference from the child")
def test_reference_dependency_copy_read_by_student_stays_out_of_visible_output(batch: Batch) -> None:
    results = batch.results["read_reference"]
    nms_output = next(t["output"] for t in results["tests"] if t.get("tags") == ["nms"])
    assert "[reference code removed]" in nms_output or "RuntimeError" in nms_output
    assert any(line in hidden_log(results) for line in solution_lines("iou"))  # printed: instructor-only log


def test_unpickling_payload_never_ran() -> None:
    assert not REDUCE_MARKER.exists()


def test_detached_sleeper_was_killed(batch: Batch) -> None:
    match = SLEEPER_LINE.search(hidden_log(batch.results["fork_sleeper"]))
    assert match, "the sleeper never started, so this test proves nothing"
    alive = [pid for pid in os.listdir("/proc") if pid.isdigit() and _comm(pid) == match.group(1) and pid_alive(int(pid))]
    assert not alive


def _comm(pid: str) -> str:
    try:
        return Path("/proc", pid, "comm").read_text().strip()
    except OSError:
        return ""


def test_stdout_flood_is_truncated_into_the_hidden_log(batch: Batch) -> None:
    results = batch.results["flood_stdout"]
    assert "more bytes dropped" in hidden_log(results)
    assert '"score": 1000' not in visible_text(results)
