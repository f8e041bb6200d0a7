"""An instructor's own copy of VOC2007: ``--tar``, ``--md5``, mismatches, ``--official-hosts`` (data_scripts.sources).

Run through ``rcnn-kit data voc2007`` (``data_scripts.cli.main``) against the local mirror:
``/voc`` is the user's mirror, ``/official`` stands for the official hosts (conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from local_mirror import OFFICIAL_PATH, Mirror, md5_of

from data_scripts import cli
from data_scripts.download import VOC2007_TEST, VOC2007_TRAINVAL, RemoteFile
from data_scripts.errors import EXIT_USER_ERROR

TAR = VOC2007_TRAINVAL.filename
VOC_ROOT = Path("VOCdevkit") / "VOC2007"
#: Flags every run here shares: no progress bar, and the tiny tar's counts are not VOC2007's.
COMMON = ["--no-progress", "--no-count-check"]


def _paths(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def test_local_tar_is_verified_and_used_where_it_is(
    tmp_path: Path, local_voc: Mirror, voc_tar: bytes, custom_voc_tar: bytes, capsys: pytest.CaptureFixture
) -> None:
    mine = tmp_path / "mine.tar"
    mine.write_bytes(voc_tar)
    data = tmp_path / "data"
    assert cli.main(["voc2007", "--tar", str(mine), "--data-dir", str(data), *COMMON]) == 0
    assert (data / VOC_ROOT / "train.json").is_file() and not (data / "downloads").exists()
    assert local_voc.requests == []
    # A modified copy: refused against the official md5, the file left as it is, no download.
    mine.write_bytes(custom_voc_tar)
    found = md5_of(custom_voc_tar)
    other = tmp_path / "other"
    assert cli.main(["voc2007", "--tar", str(mine), "--data-dir", str(other), *COMMON]) == EXIT_USER_ERROR
    line = _error(capsys)
    assert f"{mine}: md5 is {found}, expected {md5_of(voc_tar)}" in line and f"add --md5 {found}" in line
    assert mine.read_bytes() == custom_voc_tar and not other.exists() and local_voc.requests == []
    # With its md5 given, it is used (and still checked).
    assert cli.main(["voc2007", "--tar", str(mine), "--md5", found, "--data-dir", str(other), *COMMON]) == 0
    assert (other / VOC_ROOT / "NOTE.txt").read_text() == "our own copy\n"
    assert cli.main(["voc2007", "--tar", str(mine), "--md5", "0" * 32, "--data-dir", str(other), *COMMON]) == 2
    assert f"expected {'0' * 32} (given with --md5)" in _error(capsys)


def test_mirror_serving_another_file_stops_keeps_it_and_never_falls_back_to_the_official_hosts(
    tmp_path: Path, local_voc: Mirror, voc_tar: bytes, custom_voc_tar: bytes, capsys: pytest.CaptureFixture
) -> None:
    local_voc.files[f"/voc/{TAR}"] = custom_voc_tar  # the user's mirror holds their own copy
    local_voc.files[f"{OFFICIAL_PATH}/{TAR}"] = voc_tar
    found = md5_of(custom_voc_tar)
    argv = ["voc2007", "--mirror", local_voc.base_url, "--data-dir", str(tmp_path), *COMMON]
    assert cli.main(argv) == EXIT_USER_ERROR
    line = _error(capsys)
    kept = tmp_path / "downloads" / f"{TAR}.md5-{found}"
    assert f"md5 of {local_voc.url(TAR)} is {found}, expected {md5_of(voc_tar)}" in line
    assert f"kept at {kept}" in line and f"add --md5 {found}" in line and "--official-hosts" in line
    assert kept.read_bytes() == custom_voc_tar
    assert [path for path, _ in local_voc.requests] == [f"/voc/{TAR}"]  # the official hosts were not asked
    # Rerun with the md5 it found: the kept file is used, nothing is downloaded again.
    assert cli.main([*argv, "--md5", found]) == 0
    assert len(local_voc.requests) == 1 and (tmp_path / VOC_ROOT / "NOTE.txt").is_file()
    assert (tmp_path / "downloads" / TAR).read_bytes() == custom_voc_tar


def test_official_hosts_only_when_asked(
    tmp_path: Path, local_voc: Mirror, voc_tar: bytes, custom_voc_tar: bytes, capsys: pytest.CaptureFixture
) -> None:
    local_voc.files[f"/voc/{TAR}"] = custom_voc_tar
    local_voc.files[f"{OFFICIAL_PATH}/{TAR}"] = voc_tar
    argv = ["voc2007", "--data-dir", str(tmp_path), *COMMON]
    assert cli.main([*argv, "--official-hosts"]) == 0
    assert [path for path, _ in local_voc.requests] == [f"{OFFICIAL_PATH}/{TAR}"]
    assert (tmp_path / "downloads" / TAR).read_bytes() == voc_tar
    assert cli.main([*argv, "--official-hosts", "--md5", md5_of(custom_voc_tar)]) == EXIT_USER_ERROR
    assert "--official-hosts serves md5" in _error(capsys)


def test_own_mirror_with_own_md5_never_asks_the_official_hosts(
    tmp_path: Path, local_voc: Mirror, voc_tar: bytes, custom_voc_tar: bytes, capsys: pytest.CaptureFixture
) -> None:
    local_voc.files[f"/voc/{TAR}"] = custom_voc_tar
    found = md5_of(custom_voc_tar)
    data = tmp_path / "data"
    assert cli.main(["voc2007", "--md5", found, "--data-dir", str(data), *COMMON]) == EXIT_USER_ERROR
    assert "the official hosts cannot serve it; give your copy with --tar PATH or its mirror with --mirror URL" in (
        _error(capsys)
    )
    assert local_voc.requests == []
    assert cli.main(["voc2007", "--md5", found, "--mirror", local_voc.base_url, "--data-dir", str(data), *COMMON]) == 0
    assert [path for path, _ in local_voc.requests] == [f"/voc/{TAR}"]


def test_a_file_under_the_official_name_is_checked_and_never_replaced(
    tmp_path: Path, local_voc: Mirror, custom_voc_tar: bytes, capsys: pytest.CaptureFixture
) -> None:
    """The old workaround (own tar under the official name): now checked, kept, and the way on is named."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / TAR).write_bytes(custom_voc_tar)
    found = md5_of(custom_voc_tar)
    for extra in ([], ["--skip-download"], ["--mirror", local_voc.base_url]):
        assert cli.main(["voc2007", "--data-dir", str(tmp_path), *extra, *COMMON]) == EXIT_USER_ERROR
        line = _error(capsys)
        assert f"{downloads / TAR}: md5 is {found}" in line and f"add --md5 {found}" in line
    assert (downloads / TAR).read_bytes() == custom_voc_tar and local_voc.requests == []
    assert cli.main(["voc2007", "--data-dir", str(tmp_path), "--skip-download", "--md5", found, *COMMON]) == 0


def test_skip_download_without_a_tar_names_the_flag_to_use(
    tmp_path: Path, local_voc: Mirror, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["voc2007", "--data-dir", str(tmp_path), "--skip-download", *COMMON]) == EXIT_USER_ERROR
    line = _error(capsys)
    assert f"--skip-download: no {TAR} in" in line and "give your tar with --tar PATH" in line
    assert local_voc.requests == []


def test_test_tar_route(
    tmp_path: Path,
    local_voc: Mirror,
    voc_tar: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """``--with-test --test-tar``: the test tar (here the same tiny tree) is checked and extracted too."""
    monkeypatch.setattr(cli, "VOC2007_TEST", RemoteFile(VOC2007_TEST.filename, md5_of(voc_tar)))
    mine = tmp_path / "test.tar"
    mine.write_bytes(voc_tar)
    (tmp_path / "trainval.tar").write_bytes(voc_tar)
    argv = ["voc2007", "--tar", str(tmp_path / "trainval.tar"), "--data-dir", str(tmp_path / "d"), *COMMON]
    assert cli.main([*argv, "--test-tar", str(mine)]) == EXIT_USER_ERROR
    assert "add --with-test" in _error(capsys)
    # The tiny tree has no ImageSets/Main/test.txt: the JSON step names the missing list.
    assert cli.main([*argv, "--with-test", "--test-tar", str(mine), "--test-md5", "1" * 32]) == EXIT_USER_ERROR
    assert f"expected {'1' * 32} (given with --test-md5)" in _error(capsys)
    assert cli.main([*argv, "--with-test", "--test-tar", str(mine)]) == EXIT_USER_ERROR
    assert "test.txt" in _error(capsys) and local_voc.requests == []
