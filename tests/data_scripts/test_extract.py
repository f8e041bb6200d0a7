"""Safe tar extraction (data_scripts.extract), on Pythons with and without ``tarfile.data_filter``."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from storage_faults import FAULTS, fail_mkdir

from data_scripts.errors import Interrupted, StorageError
from data_scripts.extract import MARKER_TEMPLATE, safe_extract


@pytest.fixture(params=["data_filter", "no_data_filter"])
def filter_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test as on this Python, and as on a Python without ``tarfile.data_filter`` (e.g. Debian's 3.11.2)."""
    if request.param == "no_data_filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    return request.param


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        for info in members:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _all_paths(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_extracts_the_voc_tree_once(tmp_path: Path, voc_tar: bytes, filter_mode: str) -> None:
    archive = tmp_path / "voc.tar"
    archive.write_bytes(voc_tar)
    target = safe_extract(archive, tmp_path / "data")
    root = target / "VOCdevkit" / "VOC2007"
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 6
    with tarfile.open(fileobj=io.BytesIO(voc_tar)) as tar:  # the bytes are the archive's
        member = tar.extractfile("VOCdevkit/VOC2007/JPEGImages/000000.jpg")
        assert member is not None and (root / "JPEGImages" / "000000.jpg").read_bytes() == member.read()
    assert (root / "ImageSets" / "Main" / "train.txt").is_file()
    marker = target / MARKER_TEMPLATE.format(name="voc.tar")
    assert marker.read_text().split()[0] == hashlib.md5(voc_tar).hexdigest()
    (root / "JPEGImages" / "000000.jpg").unlink()
    safe_extract(archive, target)  # same archive (same md5): skipped
    assert not (root / "JPEGImages" / "000000.jpg").exists()
    safe_extract(archive, target, force=True)
    assert (root / "JPEGImages" / "000000.jpg").exists()


#: The two-step chain of the issue: each link alone stays inside, together ``l2`` is the target's parent.
SYMLINK_CHAIN = [
    _info("l1", tarfile.SYMTYPE, "."),
    _info("l1/l2", tarfile.SYMTYPE, ".."),
    _info("l2/evil"),
]


@pytest.mark.parametrize(
    "members, bad, match",
    [
        (SYMLINK_CHAIN, "l1", "is a symbolic link"),
        ([_info("fine.txt"), _info("a/link", tarfile.SYMTYPE, "../fine.txt")], "a/link", "is a symbolic link"),
        ([_info("fine.txt"), _info("a/same", tarfile.SYMTYPE, "x")], "a/same", "is a symbolic link"),  # even inside
        ([_info("fine.txt"), _info("hard", tarfile.LNKTYPE, "fine.txt")], "hard", "is a hard link"),
        ([_info("fine.txt"), _info("hard", tarfile.LNKTYPE, "/etc/passwd")], "hard", "is a hard link"),
        ([_info("fine.txt"), _info("../evil.txt")], "../evil.txt", "has a '..' part"),
        ([_info("fine.txt"), _info("ok/../../evil.txt")], "ok/../../evil.txt", "has a '..' part"),
        ([_info("fine.txt"), _info("/tmp/evil.txt")], "/tmp/evil.txt", "has an absolute path"),
        ([_info("fine.txt"), _info("dev", tarfile.CHRTYPE)], "dev", "is a device file"),
        ([_info("fine.txt"), _info("blk", tarfile.BLKTYPE)], "blk", "is a device file"),
        ([_info("fine.txt"), _info("pipe", tarfile.FIFOTYPE)], "pipe", "is a fifo"),
    ],
)
def test_refused_members_refuse_the_whole_archive_before_writing(
    tmp_path: Path, filter_mode: str, members: list[tarfile.TarInfo], bad: str, match: str
) -> None:
    archive = _tar(tmp_path / "bad.tar", members)
    target = tmp_path / "out" / "inner"
    with pytest.raises(ValueError) as info:
        safe_extract(archive, target)
    message = str(info.value)
    assert f"{archive}: member {bad!r} {match}" in message and "\n" not in message
    assert _all_paths(tmp_path) == ["bad.tar"]  # nothing written: not the target, not outside it


def test_a_link_already_in_the_target_is_not_followed(tmp_path: Path, filter_mode: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "out"
    target.mkdir()
    (target / "sub").symlink_to(outside, target_is_directory=True)
    archive = _tar(tmp_path / "a.tar", [_info("sub/evil.txt")])
    with pytest.raises(ValueError, match="member 'sub/evil.txt' would be written outside"):
        safe_extract(archive, target)
    assert list(outside.iterdir()) == []


def _cut_after(archive: Path, member_name: str, out: Path) -> Path:
    """Copy ``archive`` cut right after ``member_name``'s data (a member boundary, no end blocks)."""
    with tarfile.open(archive) as tar:
        member = tar.getmember(member_name)
    end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    out.write_bytes(archive.read_bytes()[:end])
    return out


def test_truncated_tar_is_refused_and_a_complete_one_is_extracted_after_it(
    tmp_path: Path, voc_tar: bytes, filter_mode: str
) -> None:
    full = tmp_path / "full.tar"
    full.write_bytes(voc_tar)
    archive = _cut_after(full, "VOCdevkit/VOC2007/JPEGImages/000002.jpg", tmp_path / "VOC.tar")
    with tarfile.open(archive) as tar:  # tarfile alone reads the cut archive as a complete, shorter one
        assert "VOCdevkit/VOC2007/JPEGImages/000002.jpg" == tar.getnames()[-1]
    target = tmp_path / "data"
    with pytest.raises(ValueError, match="truncated tar: it ends after member '.*000002.jpg'"):
        safe_extract(archive, target)
    assert not target.exists()
    os.replace(full, archive)  # the complete tar, under the same name
    safe_extract(archive, target)
    assert len(list((target / "VOCdevkit" / "VOC2007" / "JPEGImages").iterdir())) == 6


def test_marker_is_keyed_by_the_archive_md5(tmp_path: Path, voc_tar: bytes, filter_mode: str) -> None:
    """A shorter (but well-formed) tar extracted first; the right tar under the same name is extracted again."""
    full = tmp_path / "full.tar"
    full.write_bytes(voc_tar)
    archive = tmp_path / "VOC.tar"
    with tarfile.open(full) as src, tarfile.open(archive, "w") as dst:
        for member in src.getmembers():
            if not member.name.endswith("000005.jpg"):
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    target = tmp_path / "data"
    safe_extract(archive, target)
    image = target / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000005.jpg"
    assert not image.exists()
    os.replace(full, archive)
    safe_extract(archive, target)
    assert image.is_file()
    marker = target / MARKER_TEMPLATE.format(name="VOC.tar")
    marker.write_text("VOC.tar\n")  # the old marker format (name only): extracted again
    image.unlink()
    safe_extract(archive, target)
    assert image.is_file()


@pytest.mark.parametrize("error, words", FAULTS)
def test_stopped_extraction_says_what_is_kept_and_a_rerun_finishes(
    tmp_path: Path,
    voc_tar: bytes,
    filter_mode: str,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    words: str,
) -> None:
    kind = Interrupted if isinstance(error, KeyboardInterrupt) else StorageError
    archive = tmp_path / "voc.tar"
    archive.write_bytes(voc_tar)
    target = tmp_path / "data"
    with monkeypatch.context() as patch:
        failed = fail_mkdir(patch, lambda p: p.endswith("JPEGImages"), error)
        with pytest.raises(kind) as info:
            safe_extract(archive, target)
    assert failed, "the emulated error was never raised"
    message = str(info.value)
    assert words in message and f"the tar is kept at {archive}; rerun to extract it again" in message
    assert (target / "VOCdevkit" / "VOC2007" / "Annotations").is_dir()  # stopped half way
    assert not (target / MARKER_TEMPLATE.format(name="voc.tar")).exists()
    safe_extract(archive, target)  # no marker: extracted again, completely
    assert len(list((target / "VOCdevkit" / "VOC2007" / "JPEGImages").iterdir())) == 6


def test_not_a_tar_and_missing(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"definitely not a tar archive" * 30)
    with pytest.raises(ValueError, match="junk.tar: not a readable tar"):
        safe_extract(tmp_path / "junk.tar", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.tar"):
        safe_extract(tmp_path / "missing.tar", tmp_path / "out")


def test_compressed_tars_are_extracted_and_cut_ones_refused(tmp_path: Path, voc_tar: bytes, filter_mode: str) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(gzip.compress(voc_tar))
    root = safe_extract(archive, tmp_path / "out") / "VOCdevkit" / "VOC2007"
    assert len(list((root / "JPEGImages").iterdir())) == 6
    full = tmp_path / "full.tar"
    full.write_bytes(voc_tar)
    inner_cut = _cut_after(full, "VOCdevkit/VOC2007/JPEGImages/000002.jpg", tmp_path / "cut.tar")
    (tmp_path / "inner_cut.tar.gz").write_bytes(gzip.compress(inner_cut.read_bytes()))  # a whole gzip of a cut tar
    with pytest.raises(ValueError, match="inner_cut.tar.gz: truncated tar"):
        safe_extract(tmp_path / "inner_cut.tar.gz", tmp_path / "out2")
    (tmp_path / "cut.tar.gz").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # a cut gzip
    with pytest.raises(ValueError, match="cut.tar.gz: (not a readable tar|truncated tar)"):
        safe_extract(tmp_path / "cut.tar.gz", tmp_path / "out3")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
