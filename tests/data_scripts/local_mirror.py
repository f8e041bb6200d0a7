"""A local HTTP mirror for the download tests (imported by conftest.py and the tests).

Kept apart from conftest.py so that tests can import it by a unique module name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

#: Where the ``local_voc`` fixture (conftest.py) puts "the official hosts" on the local mirror.
OFFICIAL_PATH = "/official"


@dataclass
class Mirror:
    """A local HTTP server. ``files`` maps a URL path to bytes; ``cut_once`` paths send half, then hang up.

    ``bytes_per_connection``: when set, every response announces the whole rest of the
    file but sends at most this many bytes of it, then hangs up (a flaky link).
    """

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)
    bytes_per_connection: int | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


def make_handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # the client hung up first (a test stopped it)
                self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            mirror.requests.append((self.path, self.headers.get("Range")))
            data = mirror.files.get(self.path)
            if data is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            range_header = self.headers.get("Range")
            if range_header:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in mirror.cut_once:
                mirror.cut_once.discard(self.path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if mirror.bytes_per_connection is not None and mirror.bytes_per_connection < len(body):
                self.wfile.write(body[: mirror.bytes_per_connection])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
