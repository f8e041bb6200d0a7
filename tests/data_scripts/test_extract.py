"""Safe tar extraction (data_scripts.extract)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from data_scripts.extract import safe_extract


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


def test_extracts_the_voc_tree_once(tmp_path: Path, voc_tar: bytes) -> None:
    archive = tmp_path / "voc.tar"
    archive.write_bytes(voc_tar)
    target = safe_extract(archive, tmp_path / "data")
    root = target / "VOCdevkit" / "VOC2007"
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 6
    assert (root / "ImageSets" / "Main" / "train.txt").is_file()
    (root / "JPEGImages" / "000000.jpg").unlink()
    safe_extract(archive, target)  # marker present: skipped
    assert not (root / "JPEGImages" / "000000.jpg").exists()
    safe_extract(archive, target, force=True)
    assert (root / "JPEGImages" / "000000.jpg").exists()


@pytest.mark.parametrize(
    "member, match",
    [
        (_info("../evil.txt"), "'../evil.txt' would be written outside"),
        (_info("ok/../../evil.txt"), "would be written outside"),
        (_info("/tmp/evil.txt"), "would be written outside"),
        (_info("link", tarfile.SYMTYPE, "../../etc/passwd"), "links to '../../etc/passwd' outside"),
        (_info("hard", tarfile.LNKTYPE, "/etc/passwd"), "links to '/etc/passwd' outside"),
        (_info("dev", tarfile.CHRTYPE), "device or special file"),
    ],
)
def test_hostile_members_refuse_the_whole_archive(tmp_path: Path, member: tarfile.TarInfo, match: str) -> None:
    archive = _tar(tmp_path / "bad.tar", [_info("fine.txt"), member])
    target = tmp_path / "out" / "inner"
    with pytest.raises(ValueError, match=match) as info:
        safe_extract(archive, target)
    assert str(archive) in str(info.value)
    assert not (target / "fine.txt").exists()  # nothing extracted
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_link_inside_the_target_is_fine(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar", [_info("a/file.txt"), _info("a/link", tarfile.SYMTYPE, "file.txt")])
    target = safe_extract(archive, tmp_path / "out")
    assert (target / "a" / "link").read_bytes() == b"x"


def test_not_a_tar_and_missing(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"definitely not a tar archive" * 30)
    with pytest.raises(ValueError, match="junk.tar: not a readable tar"):
        safe_extract(tmp_path / "junk.tar", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.tar"):
        safe_extract(tmp_path / "missing.tar", tmp_path / "out")
