"""Downloads from mirrors: full, resumed, corrupt, 404, refused, read-only target (data_scripts.download)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
import requests
from local_mirror import Mirror, md5_of
from storage_faults import FAULTS, fail_part_writes

from data_scripts import download
from data_scripts.errors import Interrupted, StorageError
from data_scripts.download import (
    MIRRORS_ENV,
    ChecksumError,
    DownloadError,
    RemoteFile,
    download_file,
    fetch_from_mirrors,
    mirror_list,
)

NAME = "VOCtrainval_test.tar"


def test_full_download(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    mirror.files["/voc/" + NAME] = voc_tar
    out = fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), tmp_path / "dl", [mirror.base_url], progress=False)
    assert out == tmp_path / "dl" / NAME and out.read_bytes() == voc_tar
    assert not (tmp_path / "dl" / (NAME + ".part")).exists()


def test_interrupted_download_resumes_in_the_same_call(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    path = "/voc/" + NAME
    mirror.files[path] = voc_tar
    mirror.cut_once.add(path)
    out = fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), tmp_path, [mirror.base_url], progress=False)
    assert out.read_bytes() == voc_tar and not (tmp_path / (NAME + ".part")).exists()
    assert mirror.requests == [(path, None), (path, f"bytes={len(voc_tar) // 2}-")]  # every byte of the cut kept


def test_a_link_giving_less_than_a_chunk_per_connection_still_finishes(
    tmp_path: Path, mirror: Mirror, voc_tar: bytes
) -> None:
    """Each connection brings 3000 bytes (far below CHUNK_BYTES) and hangs up; each is appended, then resumed."""
    path = "/voc/" + NAME
    mirror.files[path] = voc_tar
    mirror.bytes_per_connection = 3000
    assert download.CHUNK_BYTES > mirror.bytes_per_connection
    out = fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), tmp_path, [mirror.base_url], progress=False)
    assert out.read_bytes() == voc_tar
    starts = [int(r.removeprefix("bytes=").rstrip("-")) if r else 0 for _, r in mirror.requests]
    assert starts == list(range(0, len(voc_tar), 3000))


def test_a_link_that_brings_nothing_gives_up_and_keeps_the_part(
    tmp_path: Path, mirror: Mirror, voc_tar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "RETRY_PAUSE_S", 0.0)
    path = "/voc/" + NAME
    mirror.files[path] = voc_tar
    (tmp_path / (NAME + ".part")).write_bytes(voc_tar[:100])
    mirror.bytes_per_connection = 0
    with pytest.raises(DownloadError, match=f"{download.MAX_TRIES_WITHOUT_PROGRESS} tries in a row") as info:
        fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), tmp_path, [mirror.base_url], progress=False)
    assert "partial download kept at" in str(info.value) and "(100 bytes)" in str(info.value)
    assert len(mirror.requests) == download.MAX_TRIES_WITHOUT_PROGRESS
    assert (tmp_path / (NAME + ".part")).read_bytes() == voc_tar[:100]


def test_resume_when_the_server_ignores_range(
    tmp_path: Path, mirror: Mirror, voc_tar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / (NAME + ".part")).write_bytes(b"stale bytes from another file")
    mirror.files["/voc/" + NAME] = voc_tar
    real_get = requests.get
    monkeypatch.setattr(download.requests, "get", lambda url, **kw: real_get(url, **{**kw, "headers": {}}))
    out = download_file(mirror.url(NAME), tmp_path / NAME, md5_of(voc_tar), progress=False)
    assert out.read_bytes() == voc_tar


def test_complete_part_file_is_checked_not_refetched(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    (tmp_path / (NAME + ".part")).write_bytes(voc_tar)
    mirror.files["/voc/" + NAME] = voc_tar
    out = download_file(mirror.url(NAME), tmp_path / NAME, md5_of(voc_tar), progress=False)
    assert out.read_bytes() == voc_tar
    assert mirror.requests == [("/voc/" + NAME, f"bytes={len(voc_tar)}-")]  # answered 416, no body


def test_md5_mismatch_keeps_the_file_and_stops(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    mirror.files["/voc/" + NAME] = voc_tar
    mirror.files["/other/" + NAME] = voc_tar
    found, wrong = md5_of(voc_tar), "0" * 32
    with pytest.raises(ChecksumError, match=f"md5 of {mirror.url(NAME)} is {found}, expected {wrong}") as info:
        fetch_from_mirrors(
            RemoteFile(NAME, wrong), tmp_path, [mirror.base_url, mirror.base_url.replace("/voc", "/other")], progress=False
        )
    kept = tmp_path / f"{NAME}.md5-{found}"
    assert info.value.path == kept and f"kept at {kept}" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == [kept.name] and kept.read_bytes() == voc_tar
    assert [p for p, _ in mirror.requests] == ["/voc/" + NAME]  # the second mirror was not tried
    # Asked for by its own md5, the kept file is taken without a download.
    out = download_file(mirror.url(NAME), tmp_path / NAME, found, progress=False)
    assert out.read_bytes() == voc_tar and not kept.exists() and len(mirror.requests) == 1


def test_md5_mismatch_may_move_on_when_asked(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    mirror.files["/voc/" + NAME] = b"a different file"
    mirror.files["/good/" + NAME] = voc_tar
    mirrors = [mirror.base_url, mirror.base_url.replace("/voc", "/good")]
    remote = RemoteFile(NAME, md5_of(voc_tar))
    out = fetch_from_mirrors(remote, tmp_path, mirrors, progress=False, next_mirror_on_mismatch=True)
    assert out.read_bytes() == voc_tar
    assert (tmp_path / f"{NAME}.md5-{md5_of(b'a different file')}").read_bytes() == b"a different file"


def test_404_and_refused_name_the_url_and_the_next_mirror(
    tmp_path: Path, mirror: Mirror, voc_tar: bytes, refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    mirror.files["/good/" + NAME] = voc_tar
    good = mirror.base_url.replace("/voc", "/good")
    mirrors = [refused_url, mirror.base_url, good]
    with caplog.at_level(logging.WARNING, logger=download.__name__):
        out = fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), tmp_path, mirrors, progress=False)
    assert out.read_bytes() == voc_tar
    first, second = (r.getMessage() for r in caplog.records)
    assert f"{refused_url}/{NAME} failed" in first and "ConnectionError" in first
    assert f"trying the next mirror {mirror.url(NAME)}" in first
    assert f"{mirror.url(NAME)} failed" in second and "404" in second
    assert f"trying the next mirror {good}/{NAME}" in second


def test_all_mirrors_fail(tmp_path: Path, mirror: Mirror, refused_url: str) -> None:
    with pytest.raises(DownloadError) as info:
        fetch_from_mirrors(RemoteFile(NAME, "0" * 32), tmp_path, [refused_url, mirror.base_url], progress=False)
    message = str(info.value)
    assert f"{refused_url}/{NAME}" in message and f"{mirror.url(NAME)}: HTTPError: 404" in message
    assert MIRRORS_ENV in message
    assert not (tmp_path / NAME).exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_a_clear_error(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    mirror.files["/voc/" + NAME] = voc_tar
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=f"target folder {target}"):
            fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), target, [mirror.base_url], progress=False)
    finally:
        target.chmod(0o755)
    assert mirror.requests == []  # failed before any network traffic


def test_read_only_filesystem_is_a_clear_error(
    tmp_path: Path, mirror: Mirror, voc_tar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same as above for machines where tests run as root: the OS error a read-only mount gives."""
    import builtins

    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if str(file).startswith(str(tmp_path)) and any(c in mode for c in "wa"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    mirror.files["/voc/" + NAME] = voc_tar
    with pytest.raises(PermissionError, match=f"target folder {tmp_path}.*Read-only"):
        fetch_from_mirrors(RemoteFile(NAME, md5_of(voc_tar)), tmp_path, [mirror.base_url], progress=False)
    assert mirror.requests == []


@pytest.mark.parametrize("error, words", FAULTS)
def test_stopped_download_keeps_what_arrived_and_a_rerun_resumes(
    tmp_path: Path,
    mirror: Mirror,
    voc_tar: bytes,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    words: str,
) -> None:
    kind = Interrupted if isinstance(error, KeyboardInterrupt) else StorageError
    path = "/voc/" + NAME
    mirror.files[path] = voc_tar
    remote = RemoteFile(NAME, md5_of(voc_tar))
    part = tmp_path / (NAME + ".part")
    with monkeypatch.context() as patch:
        fail_part_writes(patch, 5000, error)
        with pytest.raises(kind) as info:
            fetch_from_mirrors(remote, tmp_path, [mirror.base_url], progress=False)
    assert part.read_bytes() == voc_tar[:5000]
    message = str(info.value)
    assert words in message and f"partial download kept at {part} (4.9 KB); rerun to resume" in message
    assert fetch_from_mirrors(remote, tmp_path, [mirror.base_url], progress=False).read_bytes() == voc_tar
    assert mirror.requests[-1] == (path, "bytes=5000-")


def test_existing_file_is_verified(tmp_path: Path, mirror: Mirror, voc_tar: bytes) -> None:
    (tmp_path / NAME).write_bytes(voc_tar)
    assert download_file(mirror.url(NAME), tmp_path / NAME, md5_of(voc_tar), progress=False) == tmp_path / NAME
    assert mirror.requests == []
    with pytest.raises(ChecksumError, match="exists but its md5"):
        fetch_from_mirrors(RemoteFile(NAME, "0" * 32), tmp_path, [mirror.base_url], progress=False)
    assert (tmp_path / NAME).read_bytes() == voc_tar  # the user's file is never deleted


def test_mirror_list_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRRORS_ENV, " http://env1/ ,,http://flag/")
    assert mirror_list(["http://flag/"], ["http://default/"]) == [
        "http://flag/",
        "http://env1/",
        "http://default/",
    ]
    monkeypatch.delenv(MIRRORS_ENV)
    assert mirror_list() == list(download.DEFAULT_VOC2007_MIRRORS)
    with pytest.raises(ValueError, match="mirrors"):
        fetch_from_mirrors(RemoteFile(NAME, "0" * 32), "/tmp", [])
