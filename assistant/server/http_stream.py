"""A streamed HTTP answer (server-sent events) on the WebSocket port.

websockets answers plain HTTP with one complete ``Response``. A streamed answer instead writes
its head and chunked body straight to the connection's transport from ``process_request``
(waiting for the client to read: ``drain``), then hands websockets ``sent()``: a response whose
serialization is empty, so websockets adds nothing and only closes the connection after it.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Response


class _AlreadySent(Response):
    """What ``process_request`` returns once it has written its answer itself."""

    def serialize(self) -> bytes:
        """Nothing: the answer went out already."""
        return b""


def sent() -> Response:
    """The ``Response`` to return after a ``ChunkedWriter`` has written the answer."""
    return _AlreadySent(200, "OK", Headers())


class ChunkedWriter:
    """Writes one ``200`` answer with a chunked body to ``connection``, piece by piece."""

    def __init__(self, connection: ServerConnection, content_type: str) -> None:
        self.connection = connection
        self.content_type = content_type
        self.started = False

    @property
    def gone(self) -> bool:
        """True once the connection is closing: nothing more can be written."""
        return self.connection.transport.is_closing()

    def start(self) -> None:
        """Write the head."""
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Type: {self.content_type}\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        )
        self.started = True
        self._write(head.encode())

    async def write(self, data: bytes) -> None:
        """One body chunk; waits while the client is not reading."""
        if data:
            self._write(b"%x\r\n%b\r\n" % (len(data), data))
            await self.connection.drain()

    async def end(self) -> None:
        """The last chunk."""
        self._write(b"0\r\n\r\n")
        await self.connection.drain()

    def _write(self, data: bytes) -> None:
        if not self.gone:
            self.connection.transport.write(data)


def sse(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
