"""Fixtures for the data-script tests: a local HTTP mirror, tiny VOC-layout tars, the CLI pointed at them."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
from http.server import ThreadingHTTPServer
from typing import Iterator

import pytest
from local_mirror import OFFICIAL_PATH, Mirror, make_handler, md5_of

from data_scripts import cli
from data_scripts.download import MIRRORS_ENV, VOC2007_TRAINVAL, RemoteFile
from rcnn_kit.data import make_synthetic_voc


@pytest.fixture()
def mirror() -> Iterator[Mirror]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    host, port = server.server_address[:2]
    state = Mirror(base_url=f"http://{host}:{port}/voc")
    server.RequestHandlerClass = make_handler(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture()
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port we bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/voc"


@pytest.fixture(scope="session")
def voc_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tar of a tiny VOC2007-style tree (``VOCdevkit/VOC2007/...``) made from the synthetic generator.

    The synthetic class names are renamed to VOC ones in the XML so the VOC2007 route accepts them.
    """
    work = tmp_path_factory.mktemp("voc_tar")
    root = make_synthetic_voc(work / "VOCdevkit" / "VOC2007", num_images=6, image_size=48, seed=0)
    for xml in (root / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for old, new in (("rectangle", "tvmonitor"), ("ellipse", "sheep"), ("triangle", "boat")):
            text = text.replace(f"<name>{old}</name>", f"<name>{new}</name>")
        xml.write_text(text)
    for name in ("train.json", "val.json", "classes.txt"):
        (root / name).unlink()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(work / "VOCdevkit", arcname="VOCdevkit")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def custom_voc_tar(voc_tar: bytes) -> bytes:
    """An instructor's own copy: the tiny VOC tar with one more file (so another md5)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(voc_tar)) as src, tarfile.open(fileobj=buffer, mode="w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        note = b"our own copy\n"
        info = tarfile.TarInfo("VOCdevkit/VOC2007/NOTE.txt")
        info.size = len(note)
        dst.addfile(info, io.BytesIO(note))
    return buffer.getvalue()


@pytest.fixture()
def local_voc(mirror: Mirror, voc_tar: bytes, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    """The CLI with our tiny tar as "the official VOC2007 trainval" (its md5 replaces the real one).

    The local mirror serves it under the real name at ``/voc`` (a user's mirror). The
    official hosts become ``/official`` on the same server, which serves nothing unless a
    test puts the tar there: tests never reach the internet.
    """
    name = VOC2007_TRAINVAL.filename
    mirror.files[f"/voc/{name}"] = voc_tar
    monkeypatch.setattr(cli, "VOC2007_TRAINVAL", RemoteFile(name, md5_of(voc_tar)))
    monkeypatch.setattr(cli, "DEFAULT_VOC2007_MIRRORS", (mirror.base_url.replace("/voc", OFFICIAL_PATH),))
    monkeypatch.delenv(MIRRORS_ENV, raising=False)
    return mirror
