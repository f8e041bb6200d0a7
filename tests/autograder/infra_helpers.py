"""Shared helpers of the autograder infrastructure tests (sandbox, submission, results, CLI, hostile)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_ROOT / "solutions" / "faster_rcnn"
HOSTILE_DIR = Path(__file__).resolve().parent / "hostile"
KIT_TEST_PROBES = Path(__file__).resolve().parent / "probes_kittest.py"
MODULES = ("iou", "nms", "anchors", "deltas", "rpn", "detector")
#: Reference lines shorter than this are too generic to count as a leak.
LEAK_MIN_CHARS = 25
#: A small rubric for fast end-to-end runs: IoU alone, and NMS (which gets the reference iou.py).
IOU_NMS_RUBRIC = """
[[check]]
id = "iou"
name = "IoU (iou.iou)"
points = 6.0
student_modules = ["iou"]
reference_modules = []
timeout_s = 10

[[check]]
id = "nms"
name = "Non-maximum suppression (nms.nms)"
points = 7.0
student_modules = ["nms"]
reference_modules = ["iou"]
timeout_s = 12
"""


def running_as_root() -> bool:
    return os.geteuid() == 0


def make_stub(dest: Path) -> Path:
    """Write the honest empty stub (the release tool's stubs of the reference) to ``dest/faster_rcnn``."""
    from release_tool.markers import stub_source

    package = dest / "faster_rcnn"
    package.mkdir(parents=True)
    for module in MODULES:
        text = (REFERENCE_DIR / f"{module}.py").read_text()
        (package / f"{module}.py").write_text(stub_source(text, f"faster_rcnn/{module}.py"))
    return dest


def copy_reference(dest: Path) -> Path:
    """A correct submission: the reference files under ``dest/faster_rcnn``."""
    shutil.copytree(REFERENCE_DIR, dest / "faster_rcnn", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def solution_lines(module: str) -> list[str]:
    """Distinctive lines of the reference's solution regions of ``module`` (what must never leak)."""
    lines, inside = [], False
    for raw in (REFERENCE_DIR / f"{module}.py").read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("### BEGIN SOLUTION"):
            inside = True
        elif stripped.startswith("### END SOLUTION"):
            inside = False
        elif inside and len(stripped) >= LEAK_MIN_CHARS and not stripped.startswith("#"):
            lines.append(stripped)
    return lines


def visible_text(results: dict[str, Any]) -> str:
    """Everything in a results.json that a student can see."""
    parts = [results.get("output", "")]
    parts += [f"{t['name']}\n{t.get('output', '')}" for t in results["tests"] if t.get("visibility") != "hidden"]
    return "\n".join(parts)


def hidden_log(results: dict[str, Any]) -> str:
    return "\n".join(t.get("output", "") for t in results["tests"] if t.get("visibility") == "hidden")


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def score_of(results: dict[str, Any], rubric_id: str) -> float:
    return next(t["score"] for t in results["tests"] if t.get("tags") == [rubric_id])


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next(line for line in fh if line.startswith("State:"))
    except (FileNotFoundError, StopIteration):
        return False
    return "Z" not in state.split()[1]
