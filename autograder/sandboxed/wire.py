"""The wire format between the grader and a sandboxed child.

Used on both sides: the sandbox copies this file into the child's harness folder, so it
imports only the standard library and numpy (no torch, no other autograder module).

A *frame* is ``struct("!II")`` (header length, payload length), a UTF-8 JSON header and
a payload of ``.npz`` bytes. Arrays travel only as uncompressed ``.npz`` archives read
with ``numpy.load(allow_pickle=False)``, so loading a frame never runs code, and every
array is checked against an allow-list of numeric dtypes and size limits before use.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import struct
import time
import zipfile
from typing import Any

import numpy as np

#: Frame prefix: header length and payload length, network byte order.
PREFIX = struct.Struct("!II")
#: Largest JSON header accepted (bytes).
MAX_HEADER_BYTES = 1 << 20
#: Largest ``.npz`` payload accepted (bytes); a check's tensors are far smaller.
MAX_PAYLOAD_BYTES = 512 << 20
#: Largest number of arrays in one payload.
MAX_ARRAYS = 4096
#: Largest number of dimensions of one array.
MAX_NDIM = 8
#: numpy dtype kinds accepted: bool, signed int, unsigned int, float.
ALLOWED_DTYPE_KINDS = frozenset("biuf")
#: Array names: dotted/colon identifiers, e.g. ``proposals.p3.0`` or ``out``.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
#: Size of one read from a pipe.
_CHUNK = 1 << 16


class WireError(Exception):
    """A malformed, oversized or unsafe frame or array."""


class WireTimeout(WireError):
    """The other side did not answer before the deadline."""


class WireClosed(WireError):
    """The other side closed the pipe (usually: the process ended)."""


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise arrays into uncompressed ``.npz`` bytes.

    Args:
        arrays: name -> numeric numpy array (see :func:`check_array`).

    Returns:
        The ``.npz`` archive bytes (empty bytes for an empty dict).

    Raises:
        WireError: a name or array is not allowed.
    """
    if not arrays:
        return b""
    for name, arr in arrays.items():
        check_array(name, arr)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_arrays(payload: bytes, max_elements: int) -> dict[str, np.ndarray]:
    """Load and validate the arrays of an ``.npz`` payload without running any code.

    Args:
        payload: bytes produced by :func:`encode_arrays` (empty means no arrays).
        max_elements: largest total number of elements over all arrays.

    Returns:
        name -> array, each checked by :func:`check_array`.

    Raises:
        WireError: not an uncompressed npz archive, too many or too large arrays, a bad
            name, an object/structured/complex dtype, or anything numpy refuses.
    """
    if not payload:
        return {}
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise WireError(f"payload is not an npz archive: {exc}") from exc
    if len(infos) > MAX_ARRAYS:
        raise WireError(f"payload holds {len(infos)} arrays, more than {MAX_ARRAYS}")
    for info in infos:
        # Stored members only: their size is bounded by the payload size (no zip bomb).
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(payload):
            raise WireError(f"array {info.filename!r} is compressed or has a forged size")
    arrays: dict[str, np.ndarray] = {}
    total = 0
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            for name in npz.files:
                arr = npz[name]
                check_array(name, arr)
                total += arr.size
                if total > max_elements:
                    raise WireError(f"arrays hold more than {max_elements} elements in total")
                arrays[name] = arr
    except WireError:
        raise
    except Exception as exc:  # numpy raises ValueError/OSError/KeyError/... on bad input
        raise WireError(f"unreadable array payload: {type(exc).__name__}: {exc}") from exc
    return arrays


def check_array(name: str, arr: Any) -> None:
    """Raise :class:`WireError` unless ``arr`` is a plain numeric numpy array with a safe name."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise WireError(f"array name {name!r} is not allowed")
    if type(arr) is not np.ndarray:
        raise WireError(f"array {name!r}: expected a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype.fields is not None or arr.dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise WireError(f"array {name!r}: dtype {arr.dtype} is not a bool/int/float dtype")
    if arr.ndim > MAX_NDIM:
        raise WireError(f"array {name!r}: {arr.ndim} dimensions, more than {MAX_NDIM}")


def send_frame(fd: int, header: dict[str, Any], payload: bytes = b"", deadline: float | None = None) -> None:
    """Write one frame to ``fd`` (a pipe), giving up at ``deadline`` (``time.monotonic()``).

    Raises:
        WireTimeout: the reader did not take the bytes in time.
        WireClosed: the reader is gone.
    """
    head = json.dumps(header, allow_nan=False).encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    data = memoryview(PREFIX.pack(len(head), len(payload)) + head + payload)
    while data:
        _wait(fd, deadline, write=True)
        try:
            written = os.write(fd, data[:_CHUNK])
        except BlockingIOError:
            continue
        except (BrokenPipeError, OSError) as exc:
            raise WireClosed(f"pipe closed while writing: {exc}") from exc
        data = data[written:]


def recv_frame(fd: int, deadline: float | None = None, max_payload: int = MAX_PAYLOAD_BYTES) -> tuple[dict[str, Any], bytes]:
    """Read one frame from ``fd``; returns ``(header, payload)``.

    Raises:
        WireTimeout: nothing complete arrived before ``deadline``.
        WireClosed: the writer closed the pipe.
        WireError: the frame is malformed or too large.
    """
    head_len, payload_len = PREFIX.unpack(_read_exact(fd, PREFIX.size, deadline))
    if head_len > MAX_HEADER_BYTES or payload_len > max_payload:
        raise WireError(f"frame too large (header {head_len} bytes, payload {payload_len} bytes)")
    head = _read_exact(fd, head_len, deadline)
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireError(f"frame header is a {type(header).__name__}, not an object")
    return header, _read_exact(fd, payload_len, deadline)


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        _wait(fd, deadline, write=False)
        try:
            chunk = os.read(fd, min(remaining, _CHUNK))
        except BlockingIOError:
            continue
        if not chunk:
            raise WireClosed("pipe closed by the other side")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _wait(fd: int, deadline: float | None, write: bool) -> None:
    timeout = None if deadline is None else deadline - time.monotonic()
    if timeout is not None and timeout <= 0:
        raise WireTimeout("deadline passed")
    if write:
        ready = select.select([], [fd], [], timeout)[1]
    else:
        ready = select.select([fd], [], [], timeout)[0]
    if not ready:
        raise WireTimeout("deadline passed")
