"""The assignment notebook: jupytext source in solutions/ -> student Colab notebook.

The instructors' source is a jupytext "percent" script
(``solutions/faster_rcnn_notebook.py``): reviewable as plain Python, with each
cell's nbgrader metadata (schema 3) in its ``# %%`` header. This module

- reads it into an nbformat notebook with stable cell ids (:func:`read_source_notebook`),
- turns it into the student's notebook with nbgrader's own preprocessors used as
  a library, in the order ``nbgrader generate_assignment`` applies them
  (:func:`make_student_notebook`),
- inserts a papermill-style parameters cell for quick headless runs
  (:func:`inject_parameters`).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import jupytext
import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

#: Tag of the cell holding the notebook's tunable parameters (papermill's convention).
PARAMETERS_TAG = "parameters"
#: Tag of a cell inserted by :func:`inject_parameters` (papermill's convention).
INJECTED_TAG = "injected-parameters"
#: nbformat minor version written (4.5 is the first with cell ids).
NBFORMAT_MINOR = 5
#: Metadata key under which the notebook records where it was generated from.
GENERATED_KEY = "rcnn_kit"
#: Kernel the notebook asks for (Colab's and Jupyter's default Python kernel).
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
#: Colab metadata: open with a GPU runtime by default.
COLAB_METADATA = {"provenance": [], "gpuType": "T4"}
#: Characters nbformat allows in a cell id.
_CELL_ID_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def _stable_cell_ids(nb: NotebookNode) -> None:
    """Give every cell a deterministic id: its nbgrader ``grade_id`` or its position."""
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        candidate = _CELL_ID_BAD_CHARS.sub("-", str(grade_id))[:64] if grade_id else f"cell-{index:03d}"
        if candidate in seen:
            candidate = f"cell-{index:03d}"
        seen.add(candidate)
        cell["id"] = candidate


def read_source_notebook(path: str | Path, text: str | None = None) -> NotebookNode:
    """Read the jupytext source notebook as an nbformat 4.5 notebook.

    Args:
        path: the percent-format script, e.g. ``solutions/faster_rcnn_notebook.py``.
        text: the script's text to use instead of the file's (e.g. with updated sanity values).

    Returns:
        The notebook with the reference solution, nbgrader metadata as written in
        the source, no outputs, stable cell ids and no jupytext bookkeeping.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        nbformat.ValidationError: the notebook is not valid nbformat.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"source notebook: {source} does not exist")
    nb = jupytext.reads(text, fmt="py:percent") if text is not None else jupytext.read(source, fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.nbformat, nb.nbformat_minor = 4, NBFORMAT_MINOR
    _stable_cell_ids(nb)
    nbformat.validate(nb)
    return nb


def make_student_notebook(source_nb: NotebookNode, generated_from: str) -> NotebookNode:
    """Turn the source notebook into the student's notebook.

    Uses nbgrader's preprocessors in the order of ``nbgrader generate_assignment``:
    lock cells, replace ``### BEGIN SOLUTION`` regions of solution cells by
    nbgrader's code stub, clear outputs, validate metadata, compute checksums,
    drop ``### BEGIN HIDDEN TESTS`` regions, clear mark schemes, recompute checksums.

    Args:
        source_nb: from :func:`read_source_notebook` (not modified).
        generated_from: repository path of the source, recorded in the metadata.

    Returns:
        The student notebook with nbgrader metadata (so an nbgrader course can
        take it as is) and Colab metadata.

    Raises:
        RuntimeError: from nbgrader, for nested or unclosed markers or a solution
            region in a cell not marked as a solution cell.
        nbformat.ValidationError: invalid nbgrader metadata (e.g. duplicate grade_id).
    """
    nb = copy.deepcopy(source_nb)
    resources: dict[str, Any] = {}
    for preprocessor in (
        LockCells(),
        ClearSolutions(),
        ClearOutput(),
        CheckCellMetadata(),
        ComputeChecksums(),
        ClearHiddenTests(),
        ClearMarkScheme(),
        ComputeChecksums(),
        CheckCellMetadata(),
    ):
        nb, resources = preprocessor.preprocess(nb, resources)
    nb.metadata["colab"] = dict(COLAB_METADATA)
    nb.metadata["accelerator"] = "GPU"
    nb.metadata[GENERATED_KEY] = {
        "generated_from": generated_from,
        "note": "GENERATED by rcnn-kit release; edit the source in solutions/ and rerun `rcnn-kit release`.",
    }
    nbformat.validate(nb)
    return nb


def notebook_text(nb: NotebookNode) -> str:
    """The notebook as the JSON text written to disk (stable: same input, same bytes)."""
    return nbformat.writes(nb) + "\n"


def inject_parameters(nb: NotebookNode, parameters: Mapping[str, Any]) -> NotebookNode:
    """A copy of ``nb`` with a cell assigning ``parameters`` after the ``parameters`` cell.

    Args:
        nb: a notebook with exactly one cell tagged ``parameters``.
        parameters: names and values (their ``repr`` must be valid Python).

    Returns:
        The copy; the new cell is tagged ``injected-parameters`` and has no nbgrader metadata.

    Raises:
        ValueError: no cell, or more than one, is tagged ``parameters``.
    """
    positions = [i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    if len(positions) != 1:
        raise ValueError(f"nb: expected exactly one cell tagged {PARAMETERS_TAG!r}, found {len(positions)}")
    out = copy.deepcopy(nb)
    lines = ["# Parameters injected for this run"] + [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    cell["id"] = INJECTED_TAG
    out.cells.insert(positions[0] + 1, cell)
    return out
