"""Tar extraction that never writes outside the target folder.

Python's ``tarfile`` ``filter="data"`` already refuses absolute paths, ``..``,
links leaving the folder and device files; we check every member first as
well, so a hostile archive is refused as a whole, before anything is written,
with a message naming the member.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

#: Marker written into the target after a complete extraction: ``.<archive name>.extracted``.
MARKER_TEMPLATE = ".{name}.extracted"


def _inside(root: Path, candidate: Path) -> bool:
    return candidate == root or root in candidate.parents


def check_members(tar: tarfile.TarFile, target: Path, archive: Path) -> None:
    """Raise ValueError naming the first member that would land outside ``target``."""
    root = target.resolve()
    for member in tar.getmembers():
        where = f"{archive}: member {member.name!r}"
        if os.path.isabs(member.name) or not _inside(root, (root / member.name).resolve()):
            raise ValueError(f"{where} would be written outside {target}; archive refused")
        if member.issym() or member.islnk():
            base = (root / member.name).parent if member.issym() else root
            if os.path.isabs(member.linkname) or not _inside(root, (base / member.linkname).resolve()):
                raise ValueError(f"{where} links to {member.linkname!r} outside {target}; archive refused")
        elif not (member.isfile() or member.isdir()):
            raise ValueError(f"{where} is a device or special file; archive refused")


def safe_extract(archive: str | Path, target: str | Path, *, force: bool = False) -> Path:
    """Extract ``archive`` into ``target`` once; later calls are skipped thanks to a marker file.

    Args:
        archive: a tar file (any compression ``tarfile`` reads).
        target: the folder to extract into (created).
        force: extract again even if the marker exists.

    Returns:
        ``target`` as a Path.

    Raises:
        FileNotFoundError: ``archive`` does not exist.
        ValueError: ``archive`` is not a readable tar, or a member would land outside ``target``.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    marker = target / MARKER_TEMPLATE.format(name=archive.name)
    if marker.exists() and not force:
        return target
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            check_members(tar, target, archive)
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+/3.11.4+: the library's own guard as well
                tar.extractall(target, filter="data")
            else:  # pragma: no cover - older patch releases; check_members above already vetted every member
                tar.extractall(target)  # noqa: S202
    except tarfile.TarError as exc:
        raise ValueError(f"{archive}: not a readable tar archive ({exc})") from exc
    marker.write_text(f"{archive.name}\n", encoding="utf-8")
    return target
