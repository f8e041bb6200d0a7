"""How the data scripts stop: exit codes, and errors whose message says what was kept.

A download or an extraction that stops half way (Ctrl-C, a full disk, a read-only
folder) leaves files behind on purpose: a ``.part`` file a rerun resumes, a verified
tar a rerun extracts again. The exceptions below carry one line that says so, and
the command line (:mod:`data_scripts.cli`) prints it instead of a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path

#: Exit status of a command stopped by a problem the user can fix (argparse uses 2 as well).
EXIT_USER_ERROR = 2
#: Exit status after Ctrl-C: 128 + SIGINT, what shells report.
EXIT_INTERRUPTED = 130

#: errno values that mean "this folder cannot take our files", with the words we print.
STORAGE_ERRNOS: dict[int, str] = {
    code: words
    for code, words in (
        (errno.ENOSPC, "disk full"),
        (getattr(errno, "EDQUOT", None), "disk quota exceeded"),  # not defined on every OS
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "operation not permitted"),
    )
    if code is not None
}

#: Units of :func:`human_size`, each 1024 times the one before.
_SIZE_UNITS = ("bytes", "KB", "MB", "GB", "TB")
_UNIT_STEP = 1024


class StorageError(OSError):
    """Writing failed for lack of space or permission; the message names the path and what was kept.

    Attributes:
        errno: the errno of the underlying OSError (one of :data:`STORAGE_ERRNOS`).
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a download or an extraction; the message says what was kept.

    A subclass of KeyboardInterrupt, so callers that stop on Ctrl-C still do.
    """


def is_storage_error(exc: BaseException) -> bool:
    """True for an OSError meaning "no space" or "may not write here" (see :data:`STORAGE_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def storage_error(exc: OSError, doing: str, kept: str) -> StorageError:
    """One-line StorageError for ``exc`` raised while ``doing`` something; ``kept`` says what is left.

    Args:
        exc: an OSError with ``is_storage_error(exc)`` true.
        doing: e.g. ``"downloading http://... into /data/x.tar.part"``.
        kept: e.g. the text of :func:`describe_partial`.
    """
    assert exc.errno is not None  # callers check is_storage_error first
    where = f" ({exc.filename})" if exc.filename else ""
    return StorageError(f"{STORAGE_ERRNOS[exc.errno]}{where} while {doing}; {kept}", exc.errno)


def human_size(num_bytes: int) -> str:
    """``"512 bytes"``, ``"4.9 KB"``, ``"438.6 MB"``: a size in binary units with one decimal."""
    if num_bytes < _UNIT_STEP:
        return f"{num_bytes} bytes"
    size, unit = float(num_bytes), 0
    while size >= _UNIT_STEP and unit < len(_SIZE_UNITS) - 1:
        size, unit = size / _UNIT_STEP, unit + 1
    return f"{size:.1f} {_SIZE_UNITS[unit]}"


def describe_partial(part: Path) -> str:
    """What a stopped download leaves: ``"partial download kept at X (N MB); rerun to resume"``."""
    if not part.is_file() or part.stat().st_size == 0:
        return "nothing was downloaded yet"
    return f"partial download kept at {part} ({human_size(part.stat().st_size)}); rerun to resume"
