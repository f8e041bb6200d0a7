"""Build ``dist/autograder.zip`` in Gradescope's layout.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` from there once
and ``run_autograder`` (copied to ``/autograder/``) for every submission. The zip holds, at
its root::

    setup.sh, run_autograder        from autograder/gradescope/ (executable)
    pyproject.toml                  so setup.sh can ``pip install -e .[grader]`` the kit
    constraints.txt                 exact versions of every package the grader needs, read
                                    from the environment that built the bundle
    bundle_python.txt               that environment's Python version (setup.sh uses the
                                    pins only on the same version)
    rcnn_kit/ autograder/ data_scripts/ release_tool/   the kit's packages (hidden checks,
                                    probes and rubric live in autograder/)
    solutions/faster_rcnn/          the reference package
    data/overfit_subset/            the overfit smoke test's data, when one is given or found
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from rcnn_kit.course import REFERENCE_DIR

#: The kit's source checkout (this file is autograder/gradescope_zip.py).
SOURCE_ROOT = Path(__file__).resolve().parents[1]
#: Folders copied into the bundle, relative to the source root.
BUNDLED_DIRS = ("rcnn_kit", "autograder", "data_scripts", "release_tool", str(REFERENCE_DIR))
#: Files copied into the bundle, relative to the source root.
BUNDLED_FILES = ("pyproject.toml",)
#: Where the overfit subset goes inside the bundle (and so in /autograder/source).
OVERFIT_DEST = "data/overfit_subset"
#: Names never bundled.
EXCLUDED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".DS_Store"})
#: A fixed timestamp, so that two builds of the same tree give the same bytes.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
#: The kit's distribution name and the extra that holds what grading needs.
DISTRIBUTION = "rcnn-kit"
GRADER_EXTRA = "grader"


def pinned_requirements(distribution: str = DISTRIBUTION, extras: tuple[str, ...] = (GRADER_EXTRA,)) -> list[str]:
    """``name==version`` for every installed package ``distribution[extras]`` needs, recursively.

    Versions come from this environment (what the kit's tests ran with). Local version
    labels are dropped (``torch==2.14.1``, not ``2.14.1+cu130``), so the pin also admits
    the CPU build that Gradescope installs.

    Raises:
        metadata.PackageNotFoundError: ``distribution`` or one of its requirements is not installed.
    """
    pins: dict[str, str] = {}
    todo = [(distribution, set(extras))]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        key = _canonical(dist.metadata["Name"])
        if key != _canonical(distribution):
            if key in pins:
                continue
            pins[key] = dist.version.split("+")[0]
        for text in dist.requires or []:
            req = Requirement(text)
            env_sets = [{**default_environment(), "extra": extra} for extra in (wanted or {""})] + [
                {**default_environment(), "extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in env_sets):
                continue
            if _canonical(req.name) == _canonical(distribution):  # a self-referencing extra
                todo.append((req.name, set(req.extras)))
            elif _canonical(req.name) not in pins:
                todo.append((req.name, set(req.extras)))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def default_overfit_data() -> Path:
    """``$RCNN_KIT_DATA/overfit_subset`` (default ``data/overfit_subset`` in the checkout)."""
    return Path(os.environ.get("RCNN_KIT_DATA", SOURCE_ROOT / "data")) / "overfit_subset"


def bundle_entries(source_root: Path = SOURCE_ROOT, overfit_data: Path | None = None) -> dict[str, Path]:
    """Archive name -> file on disk for every bundled file.

    Raises:
        FileNotFoundError: a bundled folder/file, or the given ``overfit_data``, is missing.
    """
    entries: dict[str, Path] = {
        "setup.sh": source_root / "autograder" / "gradescope" / "setup.sh",
        "run_autograder": source_root / "autograder" / "gradescope" / "run_autograder",
    }
    for name in BUNDLED_FILES:
        entries[name] = source_root / name
    for folder in BUNDLED_DIRS:
        entries.update(_walk(source_root / folder, folder))
    if overfit_data is not None:
        if not overfit_data.is_dir():
            raise FileNotFoundError(f"overfit data folder {overfit_data} does not exist")
        entries.update(_walk(overfit_data, OVERFIT_DEST))
    for name, path in entries.items():
        if not path.is_file():
            raise FileNotFoundError(f"bundle file {name}: {path} does not exist")
    return entries


def _walk(root: Path, prefix: str) -> dict[str, Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"bundle folder {root} does not exist")
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_NAMES)
        for name in sorted(filenames):
            if name in EXCLUDED_NAMES or name.endswith(".pyc"):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            found[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    return found


def build_autograder_zip(out: str | Path = "dist/autograder.zip", overfit_data: Path | None = None,
                         source_root: Path = SOURCE_ROOT) -> Path:
    """Write the Gradescope bundle to ``out`` and return its path.

    Args:
        out: zip to write (its folder is created).
        overfit_data: overfit subset folder; default :func:`default_overfit_data` when it exists.
        source_root: the kit's checkout.

    Raises:
        ValueError: a calibrated overfit profile trains on a subset that is not bundled
            (:func:`autograder.overfit_data.check_bundle_data`).
    """
    from autograder.overfit_data import check_bundle_data

    if overfit_data is None and default_overfit_data().is_dir():
        overfit_data = default_overfit_data()
    check_bundle_data(source_root / "autograder" / "profiles", overfit_data)  # the subset a profile was calibrated on
    entries = bundle_entries(source_root, overfit_data)
    generated = {
        "constraints.txt": ("# Generated by rcnn-kit autograder-zip: the versions the kit was tested with.\n"
                            + "\n".join(pinned_requirements()) + "\n").encode(),
        "bundle_python.txt": f"{sys.version_info[0]}.{sys.version_info[1]}\n".encode(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            executable = name in ("setup.sh", "run_autograder") or os.access(entries[name], os.X_OK)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].read_bytes())
        for name, data in generated.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    os.replace(tmp, out)
    return out
