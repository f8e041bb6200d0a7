"""Emulated disk faults and Ctrl-C for the data-script tests (the tests run as root, so permissions cannot).

``fail_part_writes`` makes writes to a download's ``.part`` file fail after some bytes;
``fail_mkdir`` makes ``os.mkdir`` fail for chosen paths (tarfile, pathlib and the
extraction fallback all create folders through it).
"""

from __future__ import annotations

import builtins
import errno
import os
from typing import Any, Callable

import pytest

#: The faults every stop test runs with: ``(error raised by the OS call, words the message must hold)``.
FAULTS = [
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), "disk full", id="ENOSPC"),
    pytest.param(OSError(errno.EROFS, "Read-only file system"), "read-only file system", id="EROFS"),
    pytest.param(OSError(errno.EACCES, "Permission denied"), "permission denied", id="EACCES"),
    pytest.param(KeyboardInterrupt(), "stopped", id="ctrl-c"),
]


class FailingWrites:
    """A file whose writes stop with ``error`` once ``budget`` bytes have been written (those stay written)."""

    def __init__(self, file: Any, budget: int, error: BaseException) -> None:
        self._file, self._budget, self._error = file, budget, error

    def write(self, data: bytes) -> int:
        allowed = min(len(data), self._budget)
        if allowed:
            self._file.write(data[:allowed])
            self._budget -= allowed
        if allowed < len(data):
            raise self._error
        return allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> FailingWrites:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()


def fail_part_writes(monkeypatch: pytest.MonkeyPatch, after_bytes: int, error: BaseException) -> None:
    """Writes to any ``*.part`` file raise ``error`` after ``after_bytes`` bytes in all (per open)."""
    real_open = builtins.open

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        opened = real_open(file, mode, *args, **kwargs)
        if str(file).endswith(".part") and any(c in mode for c in "wa"):
            return FailingWrites(opened, after_bytes, error)
        return opened

    monkeypatch.setattr(builtins, "open", fake_open)


def fail_mkdir(monkeypatch: pytest.MonkeyPatch, when: Callable[[str], bool], error: BaseException) -> list[str]:
    """``os.mkdir`` raises ``error`` for paths where ``when`` holds; returns the list of paths refused."""
    real_mkdir = os.mkdir
    refused: list[str] = []

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if when(os.fspath(path)):
            refused.append(os.fspath(path))
            raise error
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    return refused
