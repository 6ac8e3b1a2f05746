"""Plain HTTP on the WebSocket port: request bodies, authentication, Origin and Host checks.

The ``websockets`` package answers plain HTTP through ``process_request`` but parses only
bodiless ``GET`` requests. ``HttpConnection`` reads a ``POST`` body itself (bounded, with a
deadline) and hands websockets the head rewritten to ``GET``; the real method and body stay
on the connection for the request handler.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

MAX_HEAD_BYTES = 16 * 1024
"""A request head larger than this is handed to websockets as is, which refuses it."""

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class HttpConnection(ServerConnection):
    """A websockets server connection that also reads the body of ``POST`` requests.

    Subclasses set ``max_body_bytes`` and ``request_timeout_s`` (the deadline for the whole
    request head and body to arrive; slower clients are dropped).
    """

    max_body_bytes = 25 * 2**20
    request_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_method = "GET"
        self.http_body = b""
        self.http_error: tuple[http.HTTPStatus, str] | None = None
        """Set when the body was refused before reading it (too large, chunked)."""
        self._pending: bytearray | None = bytearray()
        self._continued = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the request deadline, then let websockets take over."""
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.request_timeout_s, self._request_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the request deadline."""
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _request_overdue(self) -> None:
        if not self.request_rcvd.done():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Buffer the request until its head (and a POST body) is complete."""
        if self._pending is None:
            super().data_received(data)
            return
        self._pending += data
        head_end = self._pending.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self._pending) > MAX_HEAD_BYTES:
                self._pass_through()
            return
        head = bytes(self._pending[: head_end + 4])
        method, _, _ = head.partition(b" ")
        if method == b"GET":
            self._pass_through()
            return
        self.http_method = method.decode("ascii", "replace")[:16]
        length = self._content_length(head)
        body_start = head_end + 4
        if self.http_method == "POST" and self.http_error is None and length:
            if len(self._pending) - body_start < length:
                if not self._continued and b"\r\nexpect: 100-continue" in head.lower():
                    # curl waits a second for this before sending bodies over 1 MiB.
                    self._continued = True
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            self.http_body = bytes(self._pending[body_start : body_start + length])
        self._pending = None
        if self._deadline is not None:
            self._deadline.cancel()
        super().data_received(_as_get(head))

    def _pass_through(self) -> None:
        data, self._pending = bytes(self._pending or b""), None
        super().data_received(data)

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
