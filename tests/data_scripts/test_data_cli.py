"""``rcnn-kit data ...`` / ``python -m data_scripts ...`` end to end (data_scripts.cli)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from local_mirror import Mirror, md5_of

from data_scripts import cli
from data_scripts.download import MIRRORS_ENV, RemoteFile
from data_scripts.overfit_subset import verify_manifest
from rcnn_kit.data import VOCJsonDataset

TAR = "VOCtrainval_06-Nov-2007.tar"


@pytest.fixture()
def local_voc(mirror: Mirror, voc_tar: bytes, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    """The local mirror serves our tiny tar under the real name; its md5 replaces the real one."""
    mirror.files[f"/voc/{TAR}"] = voc_tar
    monkeypatch.setattr(cli, "VOC2007_TRAINVAL", RemoteFile(TAR, md5_of(voc_tar)))
    monkeypatch.setattr(cli, "DEFAULT_VOC2007_MIRRORS", ())  # never reach the internet from tests
    monkeypatch.delenv(MIRRORS_ENV, raising=False)
    return mirror


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


def test_voc2007_known_counts_are_checked(tmp_path: Path, local_voc: Mirror, capsys: pytest.CaptureFixture) -> None:
    argv = ["voc2007", "--data-dir", str(tmp_path), "--mirror", local_voc.base_url, "--no-progress"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "differ from the known 2501 / 6301" in err
    assert not (tmp_path / "VOCdevkit" / "VOC2007" / "train.json").exists()


def test_voc2007_mirror_from_env_and_failure_message(
    tmp_path: Path, local_voc: Mirror, refused_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(MIRRORS_ENV, refused_url)
    argv = ["voc2007", "--data-dir", str(tmp_path), "--no-progress", "--no-count-check"]
    assert cli.main(argv) == 1
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
        cli.main(["overfit-subset", "--source-json", str(syn / "train.json"), "--out", str(sub), "--ids", "nope"]) == 1
    )
    assert "unknown: ['nope']" in capsys.readouterr().err


def test_voc2012_route(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["voc2012", "--root", str(tmp_path / "missing")]) == 1
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
