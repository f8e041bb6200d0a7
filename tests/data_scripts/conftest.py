"""Fixtures for the data-script tests: a local HTTP mirror and a tiny VOC-layout tar."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
from http.server import ThreadingHTTPServer
from typing import Iterator

import pytest
from local_mirror import Mirror, make_handler

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
