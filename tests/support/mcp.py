"""The test MCP server over streamable HTTP on 127.0.0.1, in a thread of its own."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from tests.support import mcp_server
from tests.support.processes import Service

REPOSITORY = Path(__file__).resolve().parents[2]


def stdio_entry(log_path: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A ``mcp_servers`` entry that starts the test server as a program (stdio)."""
    entry: dict[str, Any] = {
        "name": "house",
        "command": sys.executable,
        "args": ["-m", "tests.support.mcp_server"],
        "cwd": str(REPOSITORY),
    }
    if log_path is not None:
        entry["env"] = {"MCP_TEST_LOG": str(log_path)}
    entry.update(extra)
    return entry


class _Bearer:
    """Refuses HTTP requests without ``Authorization: Bearer <token>`` (401)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"authorization", b"").decode()
            mcp_server.LAST_AUTHORIZATION.append(sent)
            if sent != f"Bearer {self.token}":
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await self.app(scope, receive, send)


class McpHttpServer(Service):
    """``with McpHttpServer(token) as server:`` serves ``server.url`` until the block ends.

    The server runs on its own thread and event loop, so a test's (or ``load_tools``'s)
    blocking calls never stall it. ``stop()`` and ``start()`` restart it on the same port.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        """Serve (on the same port as before, after a ``stop``)."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        app = _Bearer(mcp_server.build_server().streamable_http_app(), self.token)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._server = server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name="mcp-http-test-server",
            daemon=True,
        )
        self._thread.start()
        for _ in range(200):
            if server.started:
                return
            threading.Event().wait(0.05)
        raise RuntimeError("the test MCP server did not start within 10 s")

    def stop(self) -> None:
        """Stop serving (open connections are closed)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
