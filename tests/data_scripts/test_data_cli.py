"""``rcnn-kit data ...`` / ``python -m data_scripts ...`` end to end (data_scripts.cli)."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from local_mirror import Mirror
from storage_faults import FAULTS, fail_mkdir, fail_part_writes

from data_scripts import cli
from data_scripts.download import MIRRORS_ENV, VOC2007_TRAINVAL
from data_scripts.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR
from data_scripts.overfit_subset import verify_manifest
from rcnn_kit.data import VOCJsonDataset

TAR = VOC2007_TRAINVAL.filename


def test_voc2007_download_extract_and_json(tmp_path: Path, local_voc: Mirror, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    argv = ["voc2007", "--data-dir", str(data), "--mirror", local_voc.base_url, "--no-count-check", "--no-progress"]
    assert cli.main(argv) == 0
    voc_root = data / "VOCdevkit" / "VOC2007"
    assert (data / "downloads" / TAR).is_file()
    for split in ("train", "val"):
        listed = (voc_root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        ds = VOCJsonDataset(voc_root / f"{split}.json", image_size=32)
        assert [Path(r.image_path).stem for r in ds.records] == listed
        assert ds[0][1].shape == (3, 32, 32)
    out = capsys.readouterr().out
    assert "VOC2007 train:" in out and "images and" in out
    # A second run reuses the verified tar and the extraction.
    assert cli.main(argv) == 0
    assert len(local_voc.requests) == 1


def test_voc2007_known_counts_are_checked_and_the_error_names_the_flag_that_works(
    tmp_path: Path, local_voc: Mirror, capsys: pytest.CaptureFixture
) -> None:
    argv = ["voc2007", "--data-dir", str(tmp_path), "--mirror", local_voc.base_url, "--no-progress"]
    assert cli.main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "error:" in err and "differ from the known 2501 / 6301" in err
    assert "pass --no-count-check" in err and "--allow-dropped" not in err
    assert not (tmp_path / "VOCdevkit" / "VOC2007" / "train.json").exists()
    assert cli.main([*argv, "--no-count-check"]) == 0  # the flag named does what it says


def test_voc2007_mirror_from_env_and_failure_message(
    tmp_path: Path, local_voc: Mirror, refused_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(MIRRORS_ENV, refused_url)
    argv = ["voc2007", "--data-dir", str(tmp_path), "--no-progress", "--no-count-check"]
    assert cli.main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"{refused_url}/{TAR}" in err and "could not download" in err
    monkeypatch.setenv(MIRRORS_ENV, f"{refused_url},{local_voc.base_url}")
    assert cli.main(argv) == 0
    assert f"trying the next mirror {local_voc.url(TAR)}" in capsys.readouterr().err


def test_synthetic_then_overfit_subset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    syn = tmp_path / "syn"
    assert cli.main(["synthetic", "--out", str(syn), "--num-images", "8", "--image-size", "96", "--seed", "1"]) == 0
    assert len(json.loads((syn / "train.json").read_text())) + len(json.loads((syn / "val.json").read_text())) == 8
    sub = tmp_path / "sub"
    argv = [
        "overfit-subset",
        "--source-json",
        str(syn / "train.json"),
        "--out",
        str(sub),
        "--count",
        "3",
        "--min-box-side",
        "10",
        "--image-size",
        "64",
    ]
    assert cli.main(argv) == 0
    manifest = verify_manifest(sub)
    assert "ids: " + ",".join(manifest["ids"]) in capsys.readouterr().out
    assert (
        cli.main(["overfit-subset", "--source-json", str(syn / "train.json"), "--out", str(sub), "--ids", "nope"]) == 2
    )
    assert "unknown: ['nope']" in capsys.readouterr().err


def test_voc2012_route(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["voc2012", "--root", str(tmp_path / "missing")]) == EXIT_USER_ERROR
    assert "no Annotations/ folder" in capsys.readouterr().err


def test_entry_point_and_python_m(tmp_path: Path) -> None:
    registered = {ep.name: ep.value for ep in entry_points(group="rcnn_kit.commands")}
    assert registered.get("data") == "data_scripts.cli:register"
    out = tmp_path / "syn"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_scripts",
            "synthetic",
            "--out",
            str(out),
            "--num-images",
            "2",
            "--image-size",
            "48",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "train.json").is_file() and (out / "classes.txt").is_file()


def _status(error: BaseException) -> int:
    return EXIT_INTERRUPTED if isinstance(error, KeyboardInterrupt) else EXIT_USER_ERROR


def _prefix(error: BaseException) -> str:
    return "interrupted: " if isinstance(error, KeyboardInterrupt) else "error: "


def _last_line_only(err: str, prefix: str) -> str:
    """The command's own message: its last stderr line, which must start with ``prefix``; no traceback."""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(prefix), err
    return last


@pytest.mark.parametrize("error, words", FAULTS)
def test_stopped_download_is_one_line_saying_what_was_kept(
    tmp_path: Path,
    local_voc: Mirror,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    error: BaseException,
    words: str,
) -> None:
    argv = ["voc2007", "--data-dir", str(tmp_path), "--mirror", local_voc.base_url, "--no-progress", "--no-count-check"]
    with monkeypatch.context() as patch:
        fail_part_writes(patch, 2048, error)
        assert cli.main(argv) == _status(error)
    part = tmp_path / "downloads" / f"{TAR}.part"
    line = _last_line_only(capsys.readouterr().err, _prefix(error))
    assert words in line and f"partial download kept at {part} (2.0 KB); rerun to resume" in line
    assert cli.main(argv) == 0
    assert local_voc.requests[-1] == (f"/voc/{TAR}", "bytes=2048-")


@pytest.mark.parametrize("error, words", FAULTS)
def test_stopped_extraction_is_one_line_saying_what_was_kept(
    tmp_path: Path,
    local_voc: Mirror,
    voc_tar: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    error: BaseException,
    words: str,
) -> None:
    tar = tmp_path / "mine.tar"
    tar.write_bytes(voc_tar)
    data = tmp_path / "data"
    argv = ["voc2007", "--tar", str(tar), "--data-dir", str(data), "--no-progress", "--no-count-check"]
    with monkeypatch.context() as patch:
        fail_mkdir(patch, lambda p: p.endswith("JPEGImages"), error)
        assert cli.main(argv) == _status(error)
    line = _last_line_only(capsys.readouterr().err, _prefix(error))
    assert words in line and f"the tar is kept at {tar}; rerun to extract it again" in line
    assert cli.main(argv) == 0
    assert len(list((data / "VOCdevkit" / "VOC2007" / "JPEGImages").iterdir())) == 6


def test_read_only_data_folder_is_one_line(
    tmp_path: Path, voc_tar: bytes, local_voc: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    tar = tmp_path / "mine.tar"
    tar.write_bytes(voc_tar)
    data = tmp_path / "ro"
    fail_mkdir(monkeypatch, lambda p: p.startswith(str(data)), OSError(errno.EROFS, "Read-only file system", str(data)))
    assert cli.main(["voc2007", "--tar", str(tar), "--data-dir", str(data), "--no-progress"]) == EXIT_USER_ERROR
    line = _last_line_only(capsys.readouterr().err, "error: read-only file system")
    assert str(data) in line and f"the tar is kept at {tar}" in line


def _typed_usages(help_text: str, prog: str) -> list[list[str]]:
    """The argv lists a person would type from a usage: required flags with a value, first alternative of a group.

    ``[...]`` parts are optional and dropped; ``(a | b)`` keeps ``a``; an upper-case metavar
    becomes ``x``; ``DATA_COMMAND ...`` becomes each listed sub-command.
    """
    match = re.search(r"usage: (.*?)(?:\n\n|\Z)", help_text, re.S)
    assert match, help_text
    usage = " ".join(match.group(1).split())
    assert usage.startswith(prog + " "), usage
    rest = usage[len(prog) :]
    while re.search(r"\[[^\[\]]*\]", rest):
        rest = re.sub(r"\[[^\[\]]*\]", "", rest)
    rest = re.sub(r"\(([^()|]*)\|[^()]*\)", r"\1", rest)
    tokens = rest.split()
    if tokens[-2:] == ["DATA_COMMAND", "..."]:  # the sub-commands are listed under DATA_COMMAND
        listed = re.findall(r"^    (\S+)", help_text.split("DATA_COMMAND\n", 1)[1], re.M)
        return [[*tokens[:-2], command] for command in listed]
    return [["x" if t.isupper() else t for t in tokens]]


@pytest.mark.parametrize("prog", [cli.PYTHON_M_PROG, "rcnn-kit data"])
def test_every_printed_usage_works_when_typed(prog: str, capsys: pytest.CaptureFixture) -> None:
    """``--help`` of the command and of each sub-command prints usages that parse when typed back."""
    from rcnn_kit.cli import build_parser

    def run(argv: list[str]) -> tuple[int, str]:
        words = argv if prog == cli.PYTHON_M_PROG else ["data", *argv]
        parser = cli.build_parser() if prog == cli.PYTHON_M_PROG else build_parser()
        try:
            parser.parse_args(words)
        except SystemExit as exc:
            return int(exc.code or 0), capsys.readouterr().out
        return 0, ""

    status, top = run(["--help"])
    assert status == 0
    commands = _typed_usages(top, prog)
    assert sorted(c[0] for c in commands) == ["overfit-subset", "synthetic", "voc2007", "voc2012"]
    for command in commands:
        status, sub_help = run([*command, "--help"])
        assert status == 0
        for argv in _typed_usages(sub_help, f"{prog} {command[0]}"):
            assert run([command[0], *argv]) == (0, ""), argv


def test_python_m_help_prints_its_own_name(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {cli.PYTHON_M_PROG} [-h] DATA_COMMAND ...")
