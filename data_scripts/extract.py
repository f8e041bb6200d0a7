"""Tar extraction that writes only regular files and folders, inside the target, from a complete tar.

VOC tars hold nothing but files and folders, so every other member is refused,
on every Python: symbolic and hard links (a chain of links that each look harmless,
``l1 -> .``, ``l1/l2 -> ..``, then ``l2/evil``, writes outside the target), devices,
fifos; and names that are absolute or hold a ``..`` part. Every member is checked
before anything is written; the one-line error names the first bad member.

A tar cut short at a member boundary reads as a complete, shorter archive in
``tarfile``; it is recognised by the missing end-of-archive block (every tar writer
ends an archive with zero blocks) and refused as truncated.

Writing: ``tarfile``'s ``filter="data"`` where the Python has it (3.10.12+, 3.11.4+,
3.12+); otherwise each vetted member is copied out here (:func:`_copy_members`), so
the unfiltered ``extractall`` is never used.

A marker in the target, ``.<archive name>.extracted``, holds the md5 of the archive
that was extracted (``md5sum`` format); extraction is skipped only when the archive
at hand has that md5. The marker is removed before an extraction starts and written
when it has finished, so a stopped or replaced extraction is done again.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Sequence

from data_scripts.download import file_md5
from data_scripts.errors import Interrupted, is_storage_error, storage_error

#: Marker written into the target after a complete extraction: ``.<archive name>.extracted``.
MARKER_TEMPLATE = ".{name}.extracted"
#: ``tarfile``'s filter refusals (absent on Pythons without ``data_filter``).
_FILTER_ERRORS: tuple[type[Exception], ...] = tuple(filter(None, [getattr(tarfile, "FilterError", None)]))


def _inside(root: Path, candidate: Path) -> bool:
    return candidate == root or root in candidate.parents


def member_problem(member: tarfile.TarInfo, root: Path) -> str | None:
    """Why ``member`` may not be extracted into the resolved folder ``root``, or None when it may.

    Args:
        member: a member of the archive.
        root: the target folder, already resolved (``Path.resolve()``).

    Returns:
        E.g. ``"is a symbolic link (to '..')"``, or None for a regular file or folder
        whose path stays inside ``root``.
    """
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r}); links are refused"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r}); links are refused"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a fifo"
    if not (member.isfile() or member.isdir()):
        return f"is a special member (tar type {member.type!r})"
    name = PurePosixPath(member.name)
    if name.is_absolute() or os.path.isabs(member.name):
        return "has an absolute path"
    if ".." in name.parts:
        return "has a '..' part in its path"
    if not _inside(root, (root / member.name).resolve()):
        return f"would be written outside {root} (through a link already in the target)"
    return None


def check_members(tar: tarfile.TarFile, target: Path, archive: Path) -> list[tarfile.TarInfo]:
    """Every member of ``tar``, after checking each with :func:`member_problem`.

    Returns:
        The members, in archive order.

    Raises:
        ValueError: names the first bad member and why; nothing has been written.
    """
    root = Path(target).resolve()
    members = tar.getmembers()
    for member in members:
        problem = member_problem(member, root)
        if problem is not None:
            raise ValueError(f"{archive}: member {member.name!r} {problem}; archive refused, nothing extracted")
    return members


def check_complete(tar: tarfile.TarFile, archive: Path, members: Sequence[tarfile.TarInfo]) -> None:
    """Refuse a tar that ends right after a member, without the end-of-archive block.

    Args:
        tar: the open archive (its members already read).
        archive: its path, for messages.
        members: its members, in archive order.

    Raises:
        ValueError: the archive is truncated (the message says after which member).
    """
    end = 0
    if members:
        last = members[-1]
        data_blocks = -(-last.size // tarfile.BLOCKSIZE)  # ceil: member data is padded to whole blocks
        end = last.offset_data + data_blocks * tarfile.BLOCKSIZE
    try:
        tar.fileobj.seek(end)  # the uncompressed stream, for compressed tars too
        tail = tar.fileobj.read(tarfile.BLOCKSIZE)
    except EOFError:  # a compressed stream cut short
        tail = b""
    if tail != bytes(tarfile.BLOCKSIZE):
        after = f"member {members[-1].name!r}" if members else "its start"
        raise ValueError(
            f"{archive}: truncated tar: it ends after {after} without the end-of-archive block; "
            "get the complete tar again"
        )


def _copy_members(tar: tarfile.TarFile, members: Sequence[tarfile.TarInfo], target: Path) -> None:
    """Write vetted members (regular files and folders, relative paths) under ``target``.

    Used where ``tarfile.data_filter`` is missing: ``extractall`` without a filter trusts the
    archive, and these members need nothing more than a folder and a copy of the bytes.
    """
    for member in members:
        path = target / member.name
        if member.isdir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():  # a link already in the target: replace it, never write through it
            path.unlink()
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isfile() members always have data
            raise ValueError(f"member {member.name!r}: no data")
        with source, open(path, "wb") as out:
            shutil.copyfileobj(source, out)


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python 3.10.12+/3.11.4+: the library's own guard as well
        tar.extractall(target, members=members, filter="data")
    else:
        _copy_members(tar, members, target)


def safe_extract(archive: str | Path, target: str | Path, *, force: bool = False, md5: str | None = None) -> Path:
    """Extract ``archive`` into ``target``, unless that archive (same md5) was extracted there already.

    Args:
        archive: a tar file (any compression ``tarfile`` reads).
        target: the folder to extract into (created).
        force: extract again even if the marker says this archive was extracted.
        md5: the archive's md5 when the caller has just verified it (saves reading it again).

    Returns:
        ``target`` as a Path.

    Raises:
        FileNotFoundError: ``archive`` does not exist.
        ValueError: ``archive`` is not a readable tar, is truncated, or holds a member
            that is refused (see :func:`member_problem`); nothing is written then.
        data_scripts.errors.StorageError: the target is read-only or the disk filled up;
            the message says what was kept.
        data_scripts.errors.Interrupted: Ctrl-C; the message says what was kept.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    marker = target / MARKER_TEMPLATE.format(name=archive.name)
    digest = md5 or file_md5(archive)
    if not force and marker.is_file() and marker.read_text(encoding="utf-8").split()[:1] == [digest]:
        return target
    kept = f"the tar is kept at {archive}; rerun to extract it again"
    try:
        with tarfile.open(archive) as tar:
            members = check_members(tar, target, archive)
            check_complete(tar, archive, members)
            target.mkdir(parents=True, exist_ok=True)
            marker.unlink(missing_ok=True)
            _extract(tar, members, target)
        marker.write_text(f"{digest}  {archive.name}\n", encoding="utf-8")
    except (tarfile.TarError, EOFError) as exc:  # EOFError: a compressed stream cut short
        if isinstance(exc, _FILTER_ERRORS):
            raise ValueError(f"{archive}: refused by tarfile's data filter ({exc}); nothing more extracted") from exc
        raise ValueError(f"{archive}: not a readable tar archive ({exc}); if it is damaged, get it again") from exc
    except KeyboardInterrupt as exc:
        raise Interrupted(f"extraction of {archive} into {target} stopped; {kept}") from exc
    except OSError as exc:
        if is_storage_error(exc):
            raise storage_error(exc, f"extracting {archive} into {target}", kept) from exc
        raise
    return target
