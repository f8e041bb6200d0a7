"""``rcnn-kit data synthetic --out``: only into its own, new or empty folders (data_scripts.synthetic_set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_scripts import cli
from data_scripts.errors import EXIT_USER_ERROR
from data_scripts.synthetic_set import MARKER_NAME

ARGS = ["--image-size", "48", "--seed", "3"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_real_voc_folder_is_refused_and_left_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    voc = tmp_path / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "JPEGImages" / "000001.jpg").write_bytes(b"a real photo")
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "000001.xml").write_text("<annotation/>")
    before = _files(voc)
    assert cli.main(["synthetic", "--out", str(voc), *ARGS]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out: {voc} is not empty and was not written by `rcnn-kit data synthetic`")
    assert err.count("\n") == 1
    assert _files(voc) == before
    (tmp_path / "file").write_text("x")
    assert cli.main(["synthetic", "--out", str(tmp_path / "file"), *ARGS]) == EXIT_USER_ERROR
    assert "is a file" in capsys.readouterr().err


def test_rerun_on_its_own_folder_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    (out).mkdir()  # an empty folder is fine
    assert cli.main(["synthetic", "--out", str(out), "--num-images", "6", *ARGS]) == 0
    first = _files(out)
    assert MARKER_NAME in first and "JPEGImages/000005.jpg" in first
    assert cli.main(["synthetic", "--out", str(out), "--num-images", "6", *ARGS]) == 0
    assert _files(out) == first  # same arguments, same bytes
    (out / "notes.txt").write_text("mine")
    assert cli.main(["synthetic", "--out", str(out), "--num-images", "3", *ARGS]) == 0
    after = _files(out)
    assert sorted(n for n in after if n.startswith("JPEGImages/")) == [f"JPEGImages/00000{i}.jpg" for i in range(3)]
    assert sorted(n for n in after if n.startswith("Annotations/")) == [f"Annotations/00000{i}.xml" for i in range(3)]
    assert after["notes.txt"] == b"mine"  # not the command's: left alone
    fresh = tmp_path / "fresh"
    assert cli.main(["synthetic", "--out", str(fresh), "--num-images", "3", *ARGS]) == 0
    assert _files(fresh) == {name: data for name, data in after.items() if name != "notes.txt"}
