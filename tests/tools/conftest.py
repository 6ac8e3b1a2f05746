"""Fixtures for the tools tests: tools.yaml writers and a real HTTP server on loopback."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

WriteTools = Callable[..., Path]


@pytest.fixture
def write_tools(tmp_path: Path) -> WriteTools:
    """Write a (dedented) tools.yaml into the test's folder and return its path."""

    def write(text: str, name: str = "tools.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@dataclass(frozen=True)
class SeenRequest:
    """One request as the server received it (raw path, before any decoding)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = SeenRequest(self.command, self.path, dict(self.headers.items()), body)
        self.server.requests.append(seen)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path.startswith("/status/"):
            self._reply(int(url.path.rsplit("/", 1)[1]), b"nope from the server", "text/plain")
        elif url.path == "/text":
            self._reply(200, b"plain words", "text/plain; charset=utf-8")
        elif url.path == "/empty":
            self._reply(204, b"", "text/plain")
        elif url.path == "/slow":
            time.sleep(float(query.get("s", ["2"])[0]))
            self._reply(200, b'{"late": true}', "application/json")
        elif url.path == "/big":
            size = int(query["bytes"][0])
            self._reply(200, b"x" * size, "text/plain", chunked=query.get("chunked") == ["1"])
        else:
            echo = {
                "method": seen.method,
                "path": seen.path,
                "headers": {k.lower(): v for k, v in seen.headers.items()},
                "json": json.loads(body) if body else None,
            }
            self._reply(200, json.dumps(echo).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str, chunked: bool = False) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        if chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class RecordingServer(ThreadingHTTPServer):
    """A real HTTP/1.1 server on 127.0.0.1 that records what it receives.

    Routes: ``/status/<code>``, ``/text``, ``/empty``, ``/slow?s=N``,
    ``/big?bytes=N[&chunked=1]``; anything else echoes the request as JSON.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        _Handler.protocol_version = "HTTP/1.1"
        self.requests: list[SeenRequest] = []

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up early (oversize, timeout tests) is expected, not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    """A recording HTTP server on a free loopback port, stopped after the test."""
    server = RecordingServer()
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="test-http", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
