"""Unpacking submissions: accepted layouts, and refusal of hostile archives and folders."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from autograder.intake import MAX_FILE_BYTES, MAX_ZIP_TOTAL_BYTES, load_submission
from infra_helpers import MODULES, REFERENCE_DIR


def _module_text(module: str) -> bytes:
    return (REFERENCE_DIR / f"{module}.py").read_bytes()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _all_modules(prefix: str) -> dict[str, bytes]:
    return {f"{prefix}{m}.py": _module_text(m) for m in MODULES}


@pytest.mark.parametrize("prefix", ["faster_rcnn/", "", "hw5/faster_rcnn/", "hw5/"], ids=["package", "flat", "nested_package", "nested_flat"])
def test_zip_layouts_are_accepted(tmp_path: Path, prefix: str) -> None:
    archive = _zip(tmp_path / "sub.zip", {**_all_modules(prefix), "README.md": b"notes"})
    sub = load_submission(archive, tmp_path / "out")
    assert sub.problems == []
    assert sorted(sub.found) == sorted(MODULES)
    for module, path in sub.found.items():
        assert path == sub.dir / "faster_rcnn" / f"{module}.py"
        assert path.read_bytes() == _module_text(module)


def test_folder_layout_and_folder_holding_one_zip(tmp_path: Path) -> None:
    folder = tmp_path / "folder" / "faster_rcnn"
    folder.mkdir(parents=True)
    for module in MODULES:
        (folder / f"{module}.py").write_bytes(_module_text(module))
    assert sorted(load_submission(tmp_path / "folder", tmp_path / "out1").found) == sorted(MODULES)

    holder = tmp_path / "holder"
    holder.mkdir()
    _zip(holder / "submission.zip", _all_modules("faster_rcnn/"))
    assert sorted(load_submission(holder, tmp_path / "out2").found) == sorted(MODULES)


def test_package_folder_is_preferred_over_stray_flat_files(tmp_path: Path) -> None:
    members = {**_all_modules("faster_rcnn/"), "iou.py": b"raise SystemExit  # a stray scratch file\n"}
    sub = load_submission(_zip(tmp_path / "s.zip", members), tmp_path / "out")
    assert sub.found["iou"].read_bytes() == _module_text("iou")


def test_missing_modules_are_listed(tmp_path: Path) -> None:
    sub = load_submission(_zip(tmp_path / "s.zip", {"faster_rcnn/iou.py": b"x = 1\n"}), tmp_path / "out")
    assert list(sub.found) == ["iou"]
    assert any("nms.py" in p and "detector.py" in p for p in sub.problems)


@pytest.mark.parametrize("contents", [{}, {"README.md": b"hello", "notes/todo.txt": b"x"}], ids=["empty", "wrong_files"])
def test_no_modules_gives_a_problem_not_an_exception(tmp_path: Path, contents: dict[str, bytes]) -> None:
    sub = load_submission(_zip(tmp_path / "s.zip", contents), tmp_path / "out")
    assert sub.found == {}
    assert any("no faster_rcnn modules found" in p for p in sub.problems)


def test_path_traversal_and_absolute_names_are_refused(tmp_path: Path) -> None:
    members = {"../evil.py": b"EVIL", "/tmp/abs_evil.py": b"EVIL", "faster_rcnn/../../iou.py": b"EVIL",
               "faster_rcnn/nms.py": _module_text("nms")}
    sub = load_submission(_zip(tmp_path / "s.zip", members), tmp_path / "deep" / "out")
    assert list(sub.found) == ["nms"]
    assert sum("refused entry" in p for p in sub.problems) == 3
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"EVIL"]
    assert written == []


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("faster_rcnn/iou.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("faster_rcnn/nms.py", _module_text("nms"))
    sub = load_submission(archive, tmp_path / "out")
    assert "iou" not in sub.found
    assert any("symbolic link" in p for p in sub.problems)


def test_symlinked_module_in_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "sub" / "faster_rcnn"
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.py"
    secret.write_text("SECRET = 1\n")
    os.symlink(secret, folder / "iou.py")
    (folder / "nms.py").write_bytes(_module_text("nms"))
    sub = load_submission(tmp_path / "sub", tmp_path / "out")
    assert "iou" not in sub.found
    assert any("not a regular file" in p for p in sub.problems)


def test_zip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        chunk = b"\0" * (1 << 20)
        with zf.open("faster_rcnn/iou.py", "w", force_zip64=True) as fh:
            for _ in range((MAX_ZIP_TOTAL_BYTES >> 20) + 8):
                fh.write(chunk)
    assert archive.stat().st_size < MAX_ZIP_TOTAL_BYTES // 100  # it really is a bomb
    sub = load_submission(archive, tmp_path / "out")
    assert sub.found == {}
    assert any("uncompressed" in p for p in sub.problems)


def test_oversized_module_is_refused_by_bounded_read(tmp_path: Path) -> None:
    big = b"#" * (MAX_FILE_BYTES + 10)
    sub = load_submission(_zip(tmp_path / "s.zip", {"faster_rcnn/iou.py": big}), tmp_path / "out")
    assert "iou" not in sub.found
    assert any("larger than" in p for p in sub.problems)


def test_not_a_zip_and_missing_source(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip archive")
    sub = load_submission(junk, tmp_path / "out")
    assert sub.found == {} and any("neither a folder nor a zip" in p for p in sub.problems)
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        load_submission(tmp_path / "does_not_exist", tmp_path / "out2")
