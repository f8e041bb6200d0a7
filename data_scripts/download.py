"""Resumable, md5-checked downloads from a list of mirrors.

``requests`` does the HTTP (streaming, ``Range`` requests), ``hashlib`` the md5
and ``tqdm`` the progress bar. No well-kept library combines mirrors, resume
and checksum verification (torchvision's ``download_url`` and ``pooch`` do not
resume), so that glue is written here.

A download goes to ``<name>.part`` next to the target; only after its md5
matches is it renamed (atomically, :func:`os.replace`) to ``<name>``, so a file
with the final name is always complete. A ``.part`` left by an interrupted
download is resumed on the next attempt, from any mirror; a ``.part`` whose
md5 does not match is deleted.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import requests
from tqdm import tqdm

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
#: Bytes per write while streaming; a transfer that breaks off loses at most the chunk in progress.
CHUNK_BYTES = 256 * 1024
#: Suffix of the file a download streams into before its md5 is checked.
PART_SUFFIX = ".part"

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
    """A downloaded or existing file does not have the expected md5."""


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


def _join(base: str, filename: str) -> str:
    return base.rstrip("/") + "/" + filename


def _open_for_writing(path: Path, mode: str):  # noqa: ANN202 - a binary file object
    """Open the ``.part`` file; a folder we may not write to gives an error naming the folder."""
    try:
        return open(path, mode)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PermissionError(
                f"cannot write into the target folder {path.parent} ({exc.strerror}); "
                "choose a writable folder with --download-dir/--data-dir"
            ) from exc
        raise


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
        PermissionError: the target folder is not writable (names the folder).
        ChecksumError: ``dest`` already exists with another md5, or the download's
            md5 does not match (the partial file is then deleted).
        requests.RequestException: connection refused, HTTP error, or the
            transfer broke off (the ``.part`` is kept for a later resume).
    """
    dest = Path(dest)
    if dest.exists():
        actual = file_md5(dest)
        if actual == md5:
            log.info("%s already present, md5 ok", dest)
            return dest
        raise ChecksumError(f"{dest} exists but its md5 is {actual}, expected {md5}; delete it and run again")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise PermissionError(f"cannot create the target folder {dest.parent}: {exc.strerror}") from exc
    part = dest.with_name(dest.name + PART_SUFFIX)
    _open_for_writing(part, "ab").close()  # fail early, before any network traffic
    offset = part.stat().st_size
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, stream=True, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
        if offset and response.status_code == _HTTP_RANGE_NOT_SATISFIABLE:
            log.info("%s: server has nothing past byte %d; checking the partial file", url, offset)
        else:
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
                tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar,
            ):
                for chunk in response.iter_content(CHUNK_BYTES):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and part.stat().st_size < total:
                raise requests.ConnectionError(
                    f"{url}: transfer ended at byte {part.stat().st_size} of {total}; run again to resume"
                )
    actual = file_md5(part)
    if actual != md5:
        part.unlink()
        raise ChecksumError(f"md5 of {url} is {actual}, expected {md5}; the downloaded file was deleted")
    os.replace(part, dest)
    return dest


def fetch_from_mirrors(
    remote: RemoteFile, dest_dir: str | Path, mirrors: Sequence[str], *, progress: bool = True
) -> Path:
    """Download ``remote`` into ``dest_dir`` from the first mirror that works.

    Network errors, HTTP errors and md5 mismatches move on to the next mirror
    (each logged with the failing URL and the next one tried); a folder that
    cannot be written stops at once.

    Returns:
        The path of the verified file.

    Raises:
        ValueError: ``mirrors`` is empty.
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
            if dest.exists():  # an existing final file is the user's to remove
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
