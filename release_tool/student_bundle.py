"""The student bundle: one zip with exactly what a student needs and nothing else.

Layout: one top-level folder, named like the notebook's default ``DRIVE_FOLDER``
(:data:`rcnn_kit.handin.STUDENT_FOLDER_NAME`), so that the unzipped folder uploaded to
"My Drive" is found by the notebook without any edit::

    faster_rcnn_assignment/
        faster_rcnn/*.py         the stub package (rendered fresh from solutions/)
        faster_rcnn.ipynb        the Colab notebook
        rcnn_kit/...             the runtime package (given code; has ``python -m rcnn_kit submit``)
        data_scripts/...         the data-download helper (``python -m data_scripts voc2007 ...``)
        requirements.txt         what Colab lacks (from pyproject.toml, minus Colab's own packages)
        README.md                how to start, prepare VOC and submit

Never solutions, tests, the autograder or caches. Entries are written in sorted
order with a fixed timestamp, so the same sources give the same zip bytes.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path, PurePosixPath

from rcnn_kit.handin import DEFAULT_SUBMISSION, NOTEBOOK_NAME, STUDENT_FOLDER_NAME
from release_tool.release import ASSIGNMENTS_DIR, render_release

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Where ``rcnn-kit bundle`` writes by default (repository-relative; dist/ is git-ignored).
DEFAULT_BUNDLE = PurePosixPath("dist/student_bundle.zip")
#: Runtime packages copied into the bundle as they are.
RUNTIME_PACKAGES = ("rcnn_kit", "data_scripts")
#: The requirements file and the short guide at the top of the bundle.
REQUIREMENTS_FILE = "requirements.txt"
README_FILE = "README.md"
#: Distributions Colab's image already ships (torch and torchvision built for its CUDA):
#: left out of the requirements file so that pip never replaces them.
COLAB_PREINSTALLED = frozenset({"torch", "torchvision", "numpy", "pillow", "tqdm", "matplotlib", "requests"})
#: Path parts and suffixes never shipped from the runtime packages.
_SKIP_PARTS = frozenset({"__pycache__", ".ipynb_checkpoints", ".pytest_cache"})
_SKIP_SUFFIXES = frozenset({".pyc", ".pyo"})
#: Timestamp of every entry (the earliest a zip can hold), for reproducible bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Unix permissions rw-r--r-- in the high 16 bits of ``external_attr``.
_FILE_MODE = 0o644 << 16
#: The distribution name at the start of a PEP 508 requirement.
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

_README = f"""# Faster R-CNN assignment

## In Colab (the usual way)

1. Upload this whole folder, `{STUDENT_FOLDER_NAME}/`, to the top of your Google Drive ("My Drive").
2. Open `{STUDENT_FOLDER_NAME}/{NOTEBOOK_NAME}` from Drive with Colaboratory (not a copy of it:
   the notebook in this folder is the one that is submitted).
3. Run the cells in order. The first cell mounts Drive and installs `{REQUIREMENTS_FILE}`.
   `DATASET = "synthetic"` works offline in minutes; `DATASET = "voc2007"` trains on PASCAL VOC 2007
   (the tars are kept on Drive, extracted to the Colab machine's disk).
4. Edit only the `.py` files in `faster_rcnn/`; the last cell writes `{DEFAULT_SUBMISSION}`.

## From a shell in this folder

```bash
python -m pip install -r {REQUIREMENTS_FILE}    # plus torch and torchvision if you lack them
python -m rcnn_kit submit                        # checks faster_rcnn/ and writes {DEFAULT_SUBMISSION}
python -m rcnn_kit submit --help
python -m data_scripts voc2007 --help            # download and prepare VOC 2007
```
"""


def colab_requirements(pyproject: str | Path) -> str:
    """The requirements file: the runtime dependencies of ``pyproject`` that Colab lacks.

    Args:
        pyproject: the course repository's ``pyproject.toml``.

    Returns:
        The file's text: a comment, then one PEP 508 requirement a line, as pyproject
        writes it (lower bounds and environment markers kept).

    Raises:
        FileNotFoundError: ``pyproject`` does not exist.
        ValueError: it has no ``[project] dependencies`` list, or an entry without a name.
    """
    path = Path(pyproject)
    if not path.is_file():
        raise FileNotFoundError(f"root: {path} does not exist")
    with path.open("rb") as handle:
        dependencies = tomllib.load(handle).get("project", {}).get("dependencies")
    if not isinstance(dependencies, list):
        raise ValueError(f"{path}: no [project] dependencies list")
    lines = [
        "# What the notebook needs beyond the packages Colab preinstalls",
        f"# ({', '.join(sorted(COLAB_PREINSTALLED))}); generated from the course's pyproject.toml.",
    ]
    for requirement in dependencies:
        match = _REQUIREMENT_NAME.match(requirement)
        if match is None:
            raise ValueError(f"{path}: dependency {requirement!r} does not start with a package name")
        if match.group(1).lower().replace("_", "-") not in COLAB_PREINSTALLED:
            lines.append(requirement)
    return "\n".join(lines) + "\n"


def bundle_contents(root: str | Path) -> dict[str, bytes]:
    """``{name inside the zip: bytes}`` of the student bundle (every name under the top-level folder).

    Args:
        root: the repository root.

    Raises:
        FileNotFoundError: a runtime package folder or pyproject.toml is missing.
        release_tool.release.ReleaseError, release_tool.markers.MarkerError: from rendering.
    """
    base = Path(root)
    files: dict[str, bytes] = {}
    prefix = f"{ASSIGNMENTS_DIR}/"
    for rel, data in render_release(base).items():
        files[rel.removeprefix(prefix)] = data
    for package in RUNTIME_PACKAGES:
        folder = base / package
        if not (folder / "__init__.py").is_file():
            raise FileNotFoundError(f"root: the runtime package {folder}/ (with __init__.py) is missing")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(base)
            if path.is_file() and not _SKIP_PARTS.intersection(rel.parts) and path.suffix not in _SKIP_SUFFIXES:
                files[rel.as_posix()] = path.read_bytes()
    files[REQUIREMENTS_FILE] = colab_requirements(base / "pyproject.toml").encode("utf-8")
    files[README_FILE] = _README.encode("utf-8")
    return {f"{STUDENT_FOLDER_NAME}/{name}": data for name, data in files.items()}


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
