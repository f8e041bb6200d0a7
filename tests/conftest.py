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
