"""Resumable, md5-checked downloads from a list of mirrors.

``requests`` does the HTTP (streaming, ``Range`` requests), ``hashlib`` the md5
and ``tqdm`` the progress bar. No well-kept library combines mirrors, resume
and checksum verification (torchvision's ``download_url`` and ``pooch`` do not
resume), so that glue is written here.

A download goes to ``<name>.part`` next to the target; only after its md5
matches is it renamed (atomically, :func:`os.replace`) to ``<name>``, so a file
with the final name has always been verified. The body is read with
``read1`` (whatever the connection has delivered, at most :data:`CHUNK_BYTES`)
and appended to the ``.part`` at once, so a connection that breaks off keeps
every byte it brought; the transfer then resumes from the ``.part``'s end,
on the same mirror, as long as each try brings something new. A ``.part``
left by an earlier run is resumed the same way.

A finished download whose md5 is not the expected one is never deleted: it is
kept beside the target as ``<name>.md5-<its md5>`` (:func:`mismatch_path`) and
the download stops with a :class:`ChecksumError` saying what was expected and
found. Asked again with that md5 as the expected one, :func:`download_file`
takes the kept file instead of downloading.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import requests
import urllib3
from tqdm import tqdm

from data_scripts.errors import Interrupted, describe_partial, is_storage_error, storage_error

log = logging.getLogger(__name__)

#: Environment variable with extra mirror base URLs, comma separated (tried before the defaults).
MIRRORS_ENV = "RCNN_KIT_VOC_MIRRORS"

#: Mirrors of the VOC2007 tars, tried in this order after any user-given ones.
DEFAULT_VOC2007_MIRRORS: tuple[str, ...] = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
    "https://pjreddie.com/media/files/",
)

#: Seconds to wait for a connection and between received bytes.
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
#: Most bytes read (and appended to the ``.part``) at a time; a read returns what has arrived.
CHUNK_BYTES = 256 * 1024
#: Suffix of the file a download streams into before its md5 is checked.
PART_SUFFIX = ".part"
#: A download whose md5 did not match is kept as ``<name>.md5-<its md5>``.
MISMATCH_INFIX = ".md5-"
#: Tries in a row that may end without a new byte before a mirror is given up.
MAX_TRIES_WITHOUT_PROGRESS = 3
#: Seconds to wait before trying again after a try that brought nothing.
RETRY_PAUSE_S = 2.0
#: Length of an md5 hex digest.
MD5_HEX_DIGITS = 32

_HTTP_PARTIAL_CONTENT = 206
_HTTP_RANGE_NOT_SATISFIABLE = 416


@dataclass(frozen=True)
class RemoteFile:
    """A file that mirrors serve under the same name.

    Attributes:
        filename: name on the mirror and on disk.
        md5: expected md5 hex digest of the whole file.
    """

    filename: str
    md5: str


VOC2007_TRAINVAL = RemoteFile("VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64")
VOC2007_TEST = RemoteFile("VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f")


class DownloadError(RuntimeError):
    """Every mirror failed; the message lists each URL and why."""


class ChecksumError(ValueError):
    """A downloaded or existing file does not have the expected md5.

    Attributes:
        path: the file with the unexpected md5, left where it is (a download is kept
            at :func:`mismatch_path`).
        found: its md5.
        expected: the md5 that was asked for.
    """

    def __init__(self, message: str, path: Path, found: str, expected: str) -> None:
        super().__init__(message)
        self.path, self.found, self.expected = path, found, expected


def check_md5_hex(value: str) -> str:
    """``value`` as a lower-case md5 hex digest.

    Raises:
        ValueError: ``value`` is not 32 hex digits (the message shows it).
    """
    digest = value.strip().lower()
    if len(digest) != MD5_HEX_DIGITS or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"md5: expected {MD5_HEX_DIGITS} hex digits, got {value!r}")
    return digest


def mirror_list(extra: Sequence[str] = (), defaults: Sequence[str] = DEFAULT_VOC2007_MIRRORS) -> list[str]:
    """Mirror base URLs in the order they are tried: ``extra``, then ``$RCNN_KIT_VOC_MIRRORS``, then ``defaults``.

    Duplicates are dropped (first occurrence wins); blank entries are ignored.
    """
    from_env = os.environ.get(MIRRORS_ENV, "").split(",")
    ordered: list[str] = []
    for url in [*extra, *from_env, *defaults]:
        url = url.strip()
        if url and url not in ordered:
            ordered.append(url)
    return ordered


def file_hash(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file with a ``hashlib`` algorithm (``"md5"``, ``"sha256"``), read in chunks.

    (``hashlib.file_digest`` does the same from Python 3.11; the kit supports 3.10.)
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: str | Path) -> str:
    """md5 hex digest of a file."""
    return file_hash(path, "md5")


def mismatch_path(dest: str | Path, md5: str) -> Path:
    """Where a download of ``dest`` whose md5 is ``md5`` (not the expected one) is kept."""
    dest = Path(dest)
    return dest.with_name(f"{dest.name}{MISMATCH_INFIX}{md5}")


def adopt_kept(dest: str | Path, md5: str) -> bool:
    """Move a kept download whose md5 is ``md5`` (an earlier mismatch, now asked for) to ``dest``.

    Returns:
        True when ``dest`` now holds it; False when no such file was kept (or it changed since).
    """
    kept = mismatch_path(dest, md5)
    if not kept.is_file() or file_md5(kept) != md5:
        return False
    log.info("using %s, kept by an earlier download (md5 %s)", kept, md5)
    os.replace(kept, dest)
    return True


def _join(base: str, filename: str) -> str:
    return base.rstrip("/") + "/" + filename


def _open_for_writing(path: Path, mode: str) -> BinaryIO:
    """Open the ``.part`` file; a folder we may not write to gives an error naming the folder."""
    try:
        return open(path, mode)  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PermissionError(
                f"cannot write into the target folder {path.parent} ({exc.strerror}); "
                "choose a writable folder with --download-dir/--data-dir"
            ) from exc
        raise


def _transfer_once(url: str, part: Path, label: str, progress: bool) -> bool:
    """One GET of ``url`` from the end of ``part`` on, appending what arrives.

    Returns:
        True when ``part`` now holds the whole file (as far as the server says), False
        when the body broke off (every byte that arrived is in ``part``).

    Raises:
        requests.RequestException: no connection, an HTTP error status, or a resume
            answered with the wrong range.
    """
    offset = part.stat().st_size
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, stream=True, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
        if offset and response.status_code == _HTTP_RANGE_NOT_SATISFIABLE:
            log.info("%s: server has nothing past byte %d; checking the partial file", url, offset)
            return True
        response.raise_for_status()
        if offset and response.status_code != _HTTP_PARTIAL_CONTENT:
            log.info("%s: server ignored the resume request; starting over", url)
            offset = 0
        elif offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise requests.ConnectionError(
                    f"{url}: asked for bytes from {offset}, server sent range {content_range!r}"
                )
            log.info("%s: resuming at byte %d", url, offset)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            _open_for_writing(part, "ab" if offset else "wb") as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=label, disable=not progress) as bar,
        ):
            while True:
                try:
                    chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
                except urllib3.exceptions.HTTPError as exc:  # broke off (reset, timeout, short body)
                    log.info("%s: transfer broke off at byte %d (%s)", url, f.tell(), exc)
                    return False
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
            size = f.tell()
    return total is None or size >= total


def _transfer(url: str, part: Path, label: str, progress: bool) -> None:
    """Fill ``part`` from ``url``, trying again from its end while tries bring new bytes.

    Raises:
        requests.RequestException: see :func:`_transfer_once`, or
            :data:`MAX_TRIES_WITHOUT_PROGRESS` tries in a row brought nothing.
    """
    tries_without_progress = 0
    while True:
        before = part.stat().st_size
        if _transfer_once(url, part, label, progress):
            return
        if part.stat().st_size > before:
            tries_without_progress = 0
            continue
        tries_without_progress += 1
        if tries_without_progress >= MAX_TRIES_WITHOUT_PROGRESS:
            raise requests.ConnectionError(
                f"{url}: {tries_without_progress} tries in a row broke off without new data; {describe_partial(part)}"
            )
        time.sleep(RETRY_PAUSE_S)


def download_file(url: str, dest: str | Path, md5: str, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with resume and md5 verification.

    Args:
        url: the full URL.
        dest: final path of the file; its folder is created.
        md5: expected md5 hex digest (the tests pass their own).
        progress: show a tqdm progress bar.

    Returns:
        ``dest`` as a Path, holding a file with the expected md5.

    Raises:
        PermissionError: the target folder is not writable (names the folder), found
            before any network traffic.
        ChecksumError: ``dest`` already exists with another md5 (it is left as it is),
            or the download's md5 does not match (it is kept at :func:`mismatch_path`).
        requests.RequestException: connection refused, HTTP error, or the transfer
            kept breaking off (the ``.part`` is kept for a later resume).
        data_scripts.errors.StorageError: the disk filled up or became read-only during
            the transfer; the message says what was kept.
        data_scripts.errors.Interrupted: Ctrl-C; the message says what was kept.
    """
    dest = Path(dest)
    if dest.exists():
        actual = file_md5(dest)
        if actual == md5:
            log.info("%s already present, md5 ok", dest)
            return dest
        raise ChecksumError(f"{dest} exists but its md5 is {actual}, expected {md5}", dest, actual, md5)
    if adopt_kept(dest, md5):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise PermissionError(f"cannot create the target folder {dest.parent}: {exc.strerror}") from exc
    part = dest.with_name(dest.name + PART_SUFFIX)
    _open_for_writing(part, "ab").close()  # fail early, before any network traffic
    try:
        _transfer(url, part, dest.name, progress)
        actual = file_md5(part)
    except KeyboardInterrupt as exc:
        raise Interrupted(f"download of {url} stopped; {describe_partial(part)}") from exc
    except requests.RequestException:
        raise  # an OSError subclass too, but not the disk's fault
    except OSError as exc:
        if is_storage_error(exc):
            raise storage_error(exc, f"downloading {url}", describe_partial(part)) from exc
        raise
    if actual != md5:
        kept = mismatch_path(dest, actual)
        os.replace(part, kept)
        raise ChecksumError(
            f"md5 of {url} is {actual}, expected {md5}; the download is kept at {kept}", kept, actual, md5
        )
    os.replace(part, dest)
    return dest


def fetch_from_mirrors(
    remote: RemoteFile,
    dest_dir: str | Path,
    mirrors: Sequence[str],
    *,
    progress: bool = True,
    next_mirror_on_mismatch: bool = False,
) -> Path:
    """Download ``remote`` into ``dest_dir`` from the first mirror that works.

    Network and HTTP errors move on to the next mirror (each logged with the failing
    URL and the next one tried). An md5 mismatch stops, keeping the file (a mirror
    serving another file is the user's to decide about), unless
    ``next_mirror_on_mismatch``; a folder that cannot be written stops at once.

    Args:
        remote: the file's name and expected md5.
        dest_dir: folder of the downloaded file.
        mirrors: base URLs, tried in order.
        progress: show a tqdm progress bar.
        next_mirror_on_mismatch: try the next mirror after an md5 mismatch (the
            mismatched file is still kept).

    Returns:
        The path of the verified file.

    Raises:
        ValueError: ``mirrors`` is empty.
        ChecksumError: see :func:`download_file`.
        PermissionError: the target folder is not writable.
        DownloadError: every mirror failed; the message lists each URL and its error.
    """
    if not mirrors:
        raise ValueError("mirrors: no mirror URL given")
    dest = Path(dest_dir) / remote.filename
    failures: list[str] = []
    urls = [_join(base, remote.filename) for base in mirrors]
    for i, url in enumerate(urls):
        try:
            return download_file(url, dest, remote.md5, progress=progress)
        except ChecksumError as exc:
            if dest.exists() or not next_mirror_on_mismatch:
                raise
            reason = str(exc)
        except requests.RequestException as exc:
            reason = f"{type(exc).__name__}: {exc}"
        failures.append(f"{url}: {reason}")
        following = f"trying the next mirror {urls[i + 1]}" if i + 1 < len(urls) else "no mirror left"
        log.warning("download of %s failed (%s); %s", url, reason, following)
    raise DownloadError(
        f"could not download {remote.filename} from any of {len(urls)} mirror(s):\n  "
        + "\n  ".join(failures)
        + f"\nAdd a mirror with --mirror URL or ${MIRRORS_ENV}."
    )
