"""Plain HTTP on the WebSocket port: request bodies, authentication, Origin and Host checks.

The ``websockets`` package answers plain HTTP through ``process_request`` but parses only
bodiless ``GET`` requests. ``HttpConnection`` hands websockets the head of any request at once
(rewritten to ``GET``) and keeps the real method on the connection; a body is read only when
``process_request``, its checks passed, asks for it with ``read_body``. Until then it stays in
the client (or the socket): a refused client never makes the server hold its upload.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import SERVER, Request, Response

MAX_HEAD_BYTES = 16 * 1024
"""A request head larger than this is handed to websockets as is, which refuses it."""

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

_BODY_HEADERS = (b"content-length", b"transfer-encoding")

ProcessRequest = Callable[[ServerConnection, Request], Awaitable[Response | None] | Response | None]
ProcessResponse = Callable[
    [ServerConnection, Request, Response], Awaitable[Response | None] | Response | None
]


class BodyError(Exception):
    """A request body that could not be read: ``status`` and ``message`` make the answer."""

    def __init__(self, status: http.HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyBudget:
    """The request body bytes a server holds at once, bounded; past the bound, refuse.

    When nothing is held any one body fits, so a bound below a single body's limit still lets
    uploads through one at a time.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0

    def reserve(self, size_bytes: int) -> bool:
        """Hold ``size_bytes`` more, or return False (and hold nothing) if that is too many."""
        if self.held_bytes and self.held_bytes + size_bytes > self.max_bytes:
            return False
        self.held_bytes += size_bytes
        return True

    def release(self, size_bytes: int) -> None:
        """Give back what ``reserve`` took."""
        self.held_bytes -= size_bytes


class HttpConnection(ServerConnection):
    """A websockets server connection that reads a request body only when it is asked for.

    For a request other than ``GET``, the head goes to websockets as soon as it is complete and
    the socket is no longer read: ``process_request`` decides with the body still unsent (an
    ``Expect: 100-continue`` still unanswered), then answers, or awaits ``read_body`` first.
    Whatever arrives after the answer goes to websockets, which discards it.

    Subclasses set ``max_body_bytes`` and ``request_timeout_s`` (the deadline for the whole
    request head and body to arrive; a slow head is dropped, a slow body gets 408).
    """

    max_body_bytes: int
    request_timeout_s: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_method = "GET"
        self.content_length = 0
        """The body's size in bytes from Content-Length (0 without one or with ``http_error``)."""
        self.http_error: tuple[http.HTTPStatus, str] | None = None
        """Set when the body's headers make it unreadable (too large, chunked, bad length)."""
        self._head: bytearray | None = bytearray()
        """The request head while it arrives; None once websockets has it."""
        self._body: bytearray | None = None
        """The body while it is held back or read; None before the head and once taken."""
        self._holding = False
        """From a non-GET head until the answer: incoming bytes are the body, not websockets'."""
        self._body_done = asyncio.Event()
        self.client_gone = asyncio.Event()
        """Set when the client ends its side or the connection drops while its request is
        held: a streamed answer stops then (an HTTP/1.1 client does not half-close to read)."""
        self._eof_held = False
        """The client ended its side while held; websockets hears of it after the answer."""
        self._expects_continue = False
        self._deadline_s = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the request deadline, then let websockets take over."""
        super().connection_made(transport)
        self._deadline_s = self.loop.time() + self.request_timeout_s
        self._deadline = self.loop.call_at(self._deadline_s, self._request_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the request deadline and any wait for the body."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._body_done.set()
        self.client_gone.set()
        super().connection_lost(exc)

    def _request_overdue(self) -> None:
        # This timer guards the head only: read_body holds a body to the same deadline.
        if not self.request_rcvd.done():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Buffer the request head; hold back what follows a non-GET head."""
        if self._holding:
            self._take_body(data)
            return
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        head_end = self._head.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._pass_through()
            return
        head, rest = bytes(self._head[: head_end + 4]), bytes(self._head[head_end + 4 :])
        method, _, _ = head.partition(b" ")
        if method == b"GET":
            self._pass_through()
            return
        self._head = None
        self.http_method = method.decode("ascii", "replace")[:16]
        self.content_length = self._content_length(head)
        self._expects_continue = b"\r\nexpect: 100-continue" in head.lower()
        super().data_received(_as_get(head))
        if not self.request_rcvd.done():
            return  # websockets refused the head and discards the rest
        self._holding = True
        self._body = bytearray()
        # The body stays in the socket (and the client) until process_request wants it.
        self.transport.pause_reading()
        self._take_body(rest)

    # asyncio.Protocol lets eof_received return True (stay open); websockets types it None.
    def eof_received(self) -> bool | None:  # type: ignore[override]
        """Keep an end of input from websockets while the request is held.

        websockets cannot take one between the head and the answer (it would fail to answer
        at all); the client may also just be done sending, and still waiting to read.
        """
        if not self._holding:
            return super().eof_received()
        self._eof_held = True
        self._body_done.set()
        self.client_gone.set()
        return True  # keep the transport open to write the answer

    def _take_body(self, data: bytes) -> None:
        body = self._body
        if body is None:
            return  # already taken: bytes past the body are dropped
        body += data[: self.content_length - len(body)]
        if len(body) >= self.content_length:
            self._body_done.set()

    def _pass_through(self) -> None:
        data, self._head = bytes(self._head or b""), None
        super().data_received(data)

    async def read_body(self) -> bytes:
        """The request body; call it from ``process_request`` once the request is accepted.

        Answers ``Expect: 100-continue`` first (clients wait for it before sending). Raises
        ``BodyError``: 408 when the body is not in by the request deadline, 400 when the client
        closes the connection first.
        """
        body = self._body
        if body is None:
            return b""
        if len(body) < self.content_length:
            if self._expects_continue:
                # curl waits a second for this before sending bodies over 1 MiB.
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.transport.resume_reading()
            try:
                await asyncio.wait_for(
                    self._body_done.wait(), max(0.0, self._deadline_s - self.loop.time())
                )
            except TimeoutError:
                raise BodyError(
                    http.HTTPStatus.REQUEST_TIMEOUT,
                    f"the body did not arrive within {self.request_timeout_s:g} s",
                ) from None
            if len(body) < self.content_length:
                raise BodyError(
                    http.HTTPStatus.BAD_REQUEST,
                    "the connection closed before the body was complete",
                )
        self._body = None
        return bytes(body)

    async def send_streamed(
        self,
        status: http.HTTPStatus,
        content_type: str,
        body: AsyncIterator[bytes],
        *,
        max_buffered_bytes: int = 1 * 2**20,
        close_timeout_s: float = 5.0,
    ) -> None:
        """Answer with a body sent as ``body`` yields it (server-sent events), then close.

        HTTP/1.1 ends a body without Content-Length where the connection closes. Call it
        from ``process_request``, which may then return any response: websockets sends
        nothing on a closed connection. A client that goes away ends the stream at the next
        chunk; one that leaves more than ``max_buffered_bytes`` unread is cut off.
        """
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1"))
        try:
            async for chunk in body:
                if self.transport.is_closing():
                    break
                if self.transport.get_write_buffer_size() > max_buffered_bytes:
                    self.transport.abort()
                    break
                self.transport.write(chunk)
        finally:
            self.transport.close()
            await asyncio.wait({self.connection_lost_waiter}, timeout=close_timeout_s)
            if not self.connection_lost_waiter.done():
                self.transport.abort()

    async def handshake(
        self,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = SERVER,
    ) -> None:
        """websockets' opening handshake; once ``process_request`` has decided, stop holding."""

        async def decide(connection: ServerConnection, request: Request) -> Response | None:
            try:
                response = process_request(connection, request) if process_request else None
                return await response if isinstance(response, Awaitable) else response
            finally:
                self._stop_holding()

        await super().handshake(decide, process_response, server_header)

    def _stop_holding(self) -> None:
        if not self._holding:
            return
        self._holding, self._body = False, None
        self.transport.resume_reading()
        if self._eof_held:
            # websockets may take the EOF only once it has queued the answer: right after this.
            self.loop.call_soon(self._release_eof)

    def _release_eof(self) -> None:
        if not self.transport.is_closing():
            super().eof_received()
            self.transport.close()

    def _content_length(self, head: bytes) -> int:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding":
                self.http_error = (
                    http.HTTPStatus.LENGTH_REQUIRED,
                    "send the body with a Content-Length, not chunked",
                )
            elif name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self.http_error = (http.HTTPStatus.BAD_REQUEST, "bad Content-Length")
                    return 0
        if length < 0:
            self.http_error = (http.HTTPStatus.BAD_REQUEST, "bad Content-Length")
        elif length > self.max_body_bytes:
            self.http_error = (
                http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length} bytes; the limit is {self.max_body_bytes} bytes",
            )
        return 0 if self.http_error else length


def _as_get(head: bytes) -> bytes:
    """The request head with GET as its method and without body headers, for websockets."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    target = parts[1] if len(parts) > 1 else b"/"
    kept = [ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower() not in _BODY_HEADERS]
    return b"\r\n".join([b"GET " + target + b" HTTP/1.1", *kept])


# --- responses -----------------------------------------------------------------------------


def http_response(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """A complete HTTP response; the connection closes after it."""
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
        ]
    )
    for name, value in (extra_headers or {}).items():
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)


def json_response(status: http.HTTPStatus, payload: Any) -> Response:
    """A JSON HTTP response."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    return http_response(status, body, "application/json")


def error_response(status: http.HTTPStatus, message: str, **headers: str) -> Response:
    """A JSON error: ``{"error": {"code": <status>, "message": ...}}``."""
    body = json.dumps({"error": {"code": status.value, "message": message}}).encode()
    return http_response(status, body, "application/json", headers)


# --- access checks -------------------------------------------------------------------------


def request_token(request: Request) -> str | None:
    """The credential a request carries: Bearer header, Realtime subprotocol, or ``?token=``.

    Browsers cannot set headers on a WebSocket, so they pass the token as the
    ``openai-insecure-api-key.<token>`` subprotocol (as OpenAI's browser clients do) or as a
    ``token`` query parameter.
    """
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        for offered in header.split(","):
            name = offered.strip()
            if name.startswith("openai-insecure-api-key."):
                return name.removeprefix("openai-insecure-api-key.")
    values = parse_qs(urlsplit(request.path).query).get("token")
    return values[0] if values else None


def token_valid(request: Request, token: str) -> bool:
    """Whether the request carries ``token`` (compared in constant time)."""
    given = request_token(request)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def origin_allowed(request: Request, allowed_origins: frozenset[str]) -> bool:
    """Whether a browser request may come from its page's Origin.

    No ``Origin`` header (not a browser): allowed. Otherwise the Origin must be this server
    itself (the page it serves) or one of ``allowed_origins`` (``*`` allows any).
    """
    origins = request.headers.get_all("Origin")
    if not origins:
        return True
    if len(origins) > 1:
        return False
    origin = origins[0].strip().rstrip("/").lower()
    if "*" in allowed_origins or origin in allowed_origins:
        return True
    host = _single_host(request)
    return host is not None and urlsplit(origin).netloc == host


def host_is_loopback(request: Request) -> bool:
    """Whether the ``Host`` header names this machine (defeats DNS rebinding without a token)."""
    host = _single_host(request)
    if host is None:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOOPBACK_NAMES


def _single_host(request: Request) -> str | None:
    """The one ``Host`` header, lower-cased; None when missing or repeated."""
    hosts = request.headers.get_all("Host")
    return hosts[0].strip().lower() if len(hosts) == 1 and hosts[0].strip() else None
