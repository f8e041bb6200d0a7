"""Shared fixtures for the kit's own tests.

``ref`` is the reference ``faster_rcnn`` package from solutions/, imported by
folder so that it never collides with a student package of the same name.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rcnn_kit.course import REFERENCE_DIR as COURSE_REFERENCE_DIR

# Tests never try to download weights; CI machines are offline.
os.environ.setdefault("RCNN_KIT_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT / COURSE_REFERENCE_DIR

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def ref() -> ModuleType:
    """The reference package, with submodules ``ref.iou``, ``ref.nms``, ... imported."""
    from rcnn_kit.impl import import_all

    return import_all(REFERENCE_DIR, name="reference_faster_rcnn")


#: Test files by measured cost, longest first (``--durations=0``, 2-core machine). The suite
#: runs on two workers, one file per work unit (``-n 2 --dist loadfile --no-loadscope-reorder``,
#: see the Makefile), handed out in collection order: starting the longest files first keeps one
#: worker from meeting them alone at the end. Files not listed keep pytest's order after these.
SLOWEST_FIRST = (
    "autograder/test_gradescope_bundle.py",
    "autograder/test_hostile.py",
    "autograder/test_corpus.py",
    "autograder/test_students.py",
    "autograder/test_cli.py",
    "autograder/test_child_sharing.py",
    "release_tool/test_bundle.py",
    "autograder/test_calibration.py",
    "release_tool/test_nbgrader_roundtrip.py",
    "release_tool/test_notebook_run.py",
    "autograder/test_grade_all.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the files of :data:`SLOWEST_FIRST` first, in that order (a stable sort)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}

    def key(item: pytest.Item) -> int:
        relative = os.path.relpath(Path(str(item.path)).resolve(), REPO_ROOT / "tests")
        return rank.get(Path(relative).as_posix(), len(rank))

    items.sort(key=key)
