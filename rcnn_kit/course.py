"""The course's facts, each defined once; every layer (runtime, release, autograder,
data scripts, benchmarks) reads them from here.

The box-delta constants (``IGNORED_DELTA``, ``DELTA_SCALE_CLAMP``) are defined here too;
the reference's ``deltas.py`` (and so the student's stub) imports them from this module,
as the student API names them there.

Folders are given relative to the course repository's root. :func:`course_root` finds
that root from the installed runtime package; the student bundle has no ``solutions/``,
so :func:`default_impl_dir` also looks for the bundle's own ``faster_rcnn/``.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

#: Side of the square network input in pixels (a multiple of the coarsest stride).
IMAGE_SIZE = 224
#: Stride of each FPN level in pixels (p3 is 28x28 cells at 224 px).
FPN_STRIDES = MappingProxyType({"p3": 8, "p4": 16, "p5": 32})
#: GT rows per image in a batch: ``Tensor[B, MAX_GT_BOXES, 5]`` padded with -1 rows.
MAX_GT_BOXES = 40
#: Deltas (and matched-GT rows) of anchors that must not contribute to a loss: background and
#: neutral anchors. Part of the student API (``faster_rcnn.deltas.IGNORED_DELTA``).
IGNORED_DELTA = -1e8
#: Largest dw, dh before ``exp`` in ``rcnn_apply_deltas_to_anchors``: a box may grow to the image
#: size over the smallest stride (224 / 8 = 28) times its anchor, so wild deltas cannot overflow.
DELTA_SCALE_CLAMP = math.log(IMAGE_SIZE / min(FPN_STRIDES.values()))
#: Name of the student/reference package.
PACKAGE_NAME = "faster_rcnn"
#: The modules every ``faster_rcnn`` package holds, in dependency order.
STUDENT_MODULES: tuple[str, ...] = ("iou", "nms", "anchors", "deltas", "rpn", "detector")
#: Rubric entry kinds (autograder/rubric.toml): unit checks and the end-to-end overfit test.
RUBRIC_KINDS: tuple[str, ...] = ("unit", "overfit")

#: The reference package (source of truth; instructors edit it).
REFERENCE_DIR = PurePosixPath("solutions") / PACKAGE_NAME
#: The source notebook (jupytext percent script).
SOURCE_NOTEBOOK = PurePosixPath("solutions") / f"{PACKAGE_NAME}_notebook.py"
#: The generated release: stub package and notebook.
ASSIGNMENTS_DIR = PurePosixPath("assignments")
RELEASE_DIR = ASSIGNMENTS_DIR / PACKAGE_NAME
RELEASE_NOTEBOOK = ASSIGNMENTS_DIR / f"{PACKAGE_NAME}.ipynb"
#: Environment variable naming the ``faster_rcnn`` folder the runtime commands use.
IMPL_ENV = "RCNN_KIT_IMPL"

#: The runtime package's folder (this file is rcnn_kit/course.py).
_RUNTIME_DIR = Path(__file__).resolve().parent


def course_root() -> Path | None:
    """The course repository holding this runtime package, or None (e.g. the student bundle).

    A course repository has ``pyproject.toml`` and the reference package beside ``rcnn_kit/``.
    """
    root = _RUNTIME_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / REFERENCE_DIR).is_dir():
        return root
    return None


def reference_dir() -> Path:
    """The reference ``faster_rcnn`` folder of the course repository.

    Raises:
        FileNotFoundError: this runtime is not inside a course repository (the student
            bundle and an installed wheel have no reference).
    """
    root = course_root()
    if root is None:
        raise FileNotFoundError(
            f"no reference package: {_RUNTIME_DIR.parent} is not a course repository (no {REFERENCE_DIR}/); "
            "pass the folder explicitly"
        )
    return root / REFERENCE_DIR


def impl_candidates(cwd: Path | None = None) -> list[Path]:
    """Folders :func:`default_impl_dir` tries, in order.

    ``./solutions/faster_rcnn`` and ``./assignments/faster_rcnn`` (the course repository),
    ``./faster_rcnn`` (the unpacked student bundle), then the same folders beside this
    runtime package, so the commands work from any working directory.
    """
    cwd = Path.cwd() if cwd is None else Path(cwd)
    relative = [Path(REFERENCE_DIR), Path(RELEASE_DIR), Path(PACKAGE_NAME)]
    found: list[Path] = []
    for base in (cwd, _RUNTIME_DIR.parent):
        for rel in relative:
            if base / rel not in found:
                found.append(base / rel)
    return found


def default_impl_dir(cwd: Path | None = None) -> Path:
    """The ``faster_rcnn`` folder the runtime commands use without ``--impl``.

    ``$RCNN_KIT_IMPL`` when set, else the first of :func:`impl_candidates` that holds
    ``iou.py``.

    Raises:
        FileNotFoundError: none of them exists; the message lists where it looked.
    """
    env = os.environ.get(IMPL_ENV)
    if env:
        return Path(env)
    candidates = impl_candidates(cwd)
    for folder in candidates:
        if (folder / "iou.py").is_file():
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no {PACKAGE_NAME} package found (looked in {looked}); pass --impl DIR or set ${IMPL_ENV}")


def rmtree(path: str | Path) -> None:
    """Remove ``path`` recursively, making folders writable where a removal is refused.

    Scratch folders of the grader may hold folders the sandboxed child made read-only.
    A missing ``path`` is not an error.
    """

    def _retry(func: Any, name: str, exc: Any) -> None:
        os.chmod(os.path.dirname(name), 0o700)
        if os.path.isdir(name) and not os.path.islink(name):
            os.chmod(name, 0o700)
        func(name)

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):  # onerror is deprecated from 3.12 on
        shutil.rmtree(path, onexc=_retry)
    else:
        shutil.rmtree(path, onerror=_retry)
