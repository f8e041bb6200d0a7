"""The notebook's public check cells catch the bugs the original course's notebook caught.

The graded check cells of the source notebook are run in-process (in order, as a
student runs them) against the reference and against buggy packages of the
autograder's corpus (tests/autograder/corpus: the reference with one known bug).
The reference must pass every cell; each bug below must fail the cell named first
(later cells that use the broken function fail too).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torchvision
from torch import nn

from rcnn_kit.checks import check, require_all, seed_conv_weights_
from rcnn_kit.impl import import_all
from release_tool.notebook import read_source_notebook
from release_tool.release import SOURCE_NOTEBOOK

#: The graded cells that need only the six modules (the later ones train or read data).
CHECK_CELLS = ("check_anchors", "check_iou", "check_deltas", "check_nms", "check_matching", "check_rpn")
#: Corpus bug -> the check cell that must fail on it. The first three passed the notebook
#: before its checks were strengthened (no background/neutral row, no foreground anchor).
CAUGHT = {
    "deltas_background_rows_kept": "check_deltas",
    "deltas_neutral_rows_kept": "check_deltas",
    "rpn_box_loss_on_background": "check_rpn",
    "rpn_losses_not_normalised": "check_rpn",
    "pred_net_anchor_major_flatten": "check_rpn",
    "deltas_from_corners": "check_deltas",
    "iou_no_clamp": "check_iou",
    "anchors_ratio_major": "check_anchors",
}


@functools.cache
def _corpus_build() -> ModuleType:
    """tests/autograder/corpus_build.py, loaded by path (it is not a package module)."""
    path = Path(__file__).resolve().parents[1] / "autograder" / "corpus_build.py"
    spec = importlib.util.spec_from_file_location("notebook_checks_corpus_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check_sources(repo_root: Path) -> dict[str, str]:
    nb = read_source_notebook(repo_root / SOURCE_NOTEBOOK)
    return {cell.id: cell.source for cell in nb.cells if cell.id in CHECK_CELLS}


def failing_cells(package: ModuleType, sources: dict[str, str]) -> list[str]:
    """Run the check cells in order against ``package``; the ids of those that raised."""
    namespace = {
        "torch": torch, "torchvision": torchvision, "nn": nn, "check": check, "require_all": require_all,
        "seed_conv_weights_": seed_conv_weights_, "SEED": 0,
        **{name: getattr(package, name) for name in ("anchors", "iou", "deltas", "nms", "rpn")},
    }
    failed = []
    for cell_id in CHECK_CELLS:
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(sources[cell_id], cell_id, "exec"), namespace)  # noqa: S102 - our own notebook
            except Exception:  # a FAIL (AssertionError) or the student's code raising: both fail the cell
                failed.append(cell_id)
    return failed


def test_reference_passes_every_check_cell(check_sources: dict[str, str], repo_root: Path) -> None:
    assert set(check_sources) == set(CHECK_CELLS)
    reference = import_all(repo_root / "solutions" / "faster_rcnn", name="notebook_checks_reference")
    assert failing_cells(reference, check_sources) == []


@pytest.mark.parametrize("bug", sorted(CAUGHT))
def test_check_cells_catch_the_bug(bug: str, check_sources: dict[str, str], tmp_path: Path) -> None:
    corpus = _corpus_build()
    entry = next(e for e in corpus.load_entries("buggy") if e.name == bug)
    package = import_all(corpus.build_submission(entry, tmp_path / bug), name=f"notebook_checks_{bug}")
    failed = failing_cells(package, check_sources)
    assert failed[:1] == [CAUGHT[bug]], f"{bug}: failing cells {failed}"
