"""Helpers shared by the notebook tests: tiny parameters and a headless kernel run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

#: Parameters that make every training cell a handful of steps on a few tiny images. Two
#: steps cannot overfit anything, so the overfit checks' floors are 0 here: these runs test
#: that the cells work together; the checks' verdicts are tested in test_notebook_checks.py.
TINY_PARAMETERS: dict[str, Any] = {
    "SYNTHETIC_IMAGES": 6,
    "IMAGE_SIZE": 64,
    "OVERFIT_IMAGES": 2,
    "RPN_OVERFIT_ITERS": 2,
    "DETECTOR_OVERFIT_ITERS": 2,
    "RPN_OVERFIT_MIN_RECALL": 0.0,
    "DETECTOR_OVERFIT_MIN_MAP": 0.0,
    "TRAIN_ITERS": 2,
    "BATCH_SIZE": 2,
    "NUM_PICTURES": 2,
    "DEVICE": "cpu",
    "PRETRAINED": False,
}
#: Seconds one cell may run before the kernel run is abandoned.
CELL_TIMEOUT_S = 240


def copy_package(source: Path, workdir: Path) -> Path:
    """Copy a ``faster_rcnn`` package folder into ``workdir/faster_rcnn`` (no caches)."""
    target = workdir / "faster_rcnn"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def execute(nb: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``workdir``.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; ``nb`` keeps the outputs so far.
    """
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def cell_text(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell printed (streams and text/plain results) as one string."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
    return "".join(parts)
