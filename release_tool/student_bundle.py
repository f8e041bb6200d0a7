"""The student bundle: one zip with exactly what a student needs and nothing else.

Layout (zip root = the student's Drive folder)::

    faster_rcnn/*.py         the stub package (rendered fresh from solutions/)
    faster_rcnn.ipynb        the Colab notebook
    rcnn_kit/...             the runtime package (given code)
    data_scripts/...         the data-download helper

Never solutions, tests, the autograder or caches. Entries are written in sorted
order with a fixed timestamp, so the same sources give the same zip bytes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from release_tool.release import ASSIGNMENTS_DIR, render_release

#: Where ``rcnn-kit bundle`` writes by default (repository-relative; dist/ is git-ignored).
DEFAULT_BUNDLE = PurePosixPath("dist/student_bundle.zip")
#: Runtime packages copied into the bundle as they are.
RUNTIME_PACKAGES = ("rcnn_kit", "data_scripts")
#: Path parts and suffixes never shipped from the runtime packages.
_SKIP_PARTS = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache"})
_SKIP_SUFFIXES = frozenset({".pyc", ".pyo"})
#: Timestamp of every entry (the earliest a zip can hold), for reproducible bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Unix permissions rw-r--r-- in the high 16 bits of ``external_attr``.
_FILE_MODE = 0o644 << 16


def bundle_contents(root: str | Path) -> dict[str, bytes]:
    """``{name inside the zip: bytes}`` of the student bundle.

    Args:
        root: the repository root.

    Raises:
        FileNotFoundError: a runtime package folder is missing.
        release_tool.release.ReleaseError, release_tool.markers.MarkerError: from rendering.
    """
    base = Path(root)
    contents: dict[str, bytes] = {}
    prefix = f"{ASSIGNMENTS_DIR}/"
    for rel, data in render_release(base).items():
        contents[rel.removeprefix(prefix)] = data
    for package in RUNTIME_PACKAGES:
        folder = base / package
        if not (folder / "__init__.py").is_file():
            raise FileNotFoundError(f"root: the runtime package {folder}/ (with __init__.py) is missing")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(base)
            if path.is_file() and not _SKIP_PARTS.intersection(rel.parts) and path.suffix not in _SKIP_SUFFIXES:
                contents[rel.as_posix()] = path.read_bytes()
    return contents


def build_student_bundle(root: str | Path, output: str | Path | None = None) -> Path:
    """Write the student bundle zip.

    Args:
        root: the repository root.
        output: zip path; default ``<root>/dist/student_bundle.zip`` (folders are created).

    Returns:
        The path written.
    """
    base = Path(root)
    out = Path(output) if output is not None else base / DEFAULT_BUNDLE
    contents = bundle_contents(base)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(contents):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = _FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, contents[name])
    return out
