"""Build ``dist/autograder.zip`` in Gradescope's layout.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` from there once
and ``run_autograder`` (copied to ``/autograder/``) for every submission. The zip holds, at
its root::

    setup.sh, run_autograder        from autograder/gradescope/ (executable)
    pyproject.toml                  so setup.sh can ``pip install -e`` the kit
    rcnn_kit/ autograder/ data_scripts/ release_tool/   the kit's packages (hidden checks,
                                    probes and rubric live in autograder/)
    solutions/faster_rcnn/          the reference package
    data/overfit_subset/            the overfit smoke test's data, when one is given or found
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

#: The kit's source checkout (this file is autograder/gradescope_zip.py).
SOURCE_ROOT = Path(__file__).resolve().parents[1]
#: Folders copied into the bundle, relative to the source root.
BUNDLED_DIRS = ("rcnn_kit", "autograder", "data_scripts", "release_tool", "solutions/faster_rcnn")
#: Files copied into the bundle, relative to the source root.
BUNDLED_FILES = ("pyproject.toml",)
#: Where the overfit subset goes inside the bundle (and so in /autograder/source).
OVERFIT_DEST = "data/overfit_subset"
#: Names never bundled.
EXCLUDED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".DS_Store"})
#: A fixed timestamp, so that two builds of the same tree give the same bytes.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


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
    os.replace(tmp, out)
    return out
