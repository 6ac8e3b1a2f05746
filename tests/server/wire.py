"""Talking to a running server from tests: URLs, sessions, events; a server tool they gate."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from assistant.server.assistant_server import AssistantServer
from assistant.tools import ToolRegistry, tool

EVENT_TIMEOUT_S = 30.0

CANCEL_WAIT_S = 2.0
"""The session's bound on a cancelled response's wind-down, shortened by the ``gate`` fixture."""


@dataclass
class Gate:
    """A server tool, ``slow_thing``, that runs until the test lets it finish."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def registry(self) -> ToolRegistry:
        @tool(timeout_s=60)
        async def slow_thing() -> str:
            """Do a slow thing."""
            self.started.set()
            await self.release.wait()
            return "the slow thing is done"

        return ToolRegistry.from_functions([slow_thing])


def ws_url(server: AssistantServer, query: str = "") -> str:
    """The /v1/realtime URL of a running server."""
    return f"ws://127.0.0.1:{server.port}/v1/realtime{query}"


async def next_event(ws: ClientConnection, kind: str | None = None) -> dict[str, Any]:
    """The next server event (of type ``kind``, skipping others)."""
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            event = json.loads(await ws.recv())
            if kind is None or event["type"] == kind:
                return event


async def events_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """All server events up to and including the first of type ``kind``."""
    seen = []
    while True:
        event = await next_event(ws)
        seen.append(event)
        if event["type"] == kind:
            return seen


async def open_session(server: AssistantServer, **connect_options: Any) -> ClientConnection:
    """Connect to /v1/realtime and consume session.created."""
    ws = await connect(ws_url(server), **connect_options)
    created = await next_event(ws)
    assert created["type"] == "session.created"
    return ws


def pcm16_b64(pcm: np.ndarray) -> str:
    """int16 samples as base64 PCM16 (little-endian)."""
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


class HttpReply:
    """Status, headers and body of one plain HTTP exchange."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


async def http(
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> HttpReply:
    """One HTTP request with the standard library (in a thread, so the server keeps running)."""
    import urllib.error
    import urllib.request

    headers = dict(headers or {})
    if json_body is not None:
        content = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=content, method=method, headers=headers)

    def send() -> HttpReply:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return HttpReply(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return HttpReply(error.code, dict(error.headers.items()), error.read())

    return await asyncio.to_thread(send)
