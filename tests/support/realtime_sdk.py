"""The official openai SDK's Realtime client against a test server."""

from __future__ import annotations

import asyncio
from typing import Any

from openai import AsyncOpenAI

TOKEN = "sdk-test-token"
"""The token the SDK tests' servers are started with."""


def sdk_client(server: Any, token: str = TOKEN) -> AsyncOpenAI:
    """An SDK client for ``server`` (HTTP and WebSocket on its port)."""
    return AsyncOpenAI(
        api_key=token,
        base_url=f"http://127.0.0.1:{server.port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
    )


async def events_until(conn: Any, kind: str, timeout_s: float = 60.0) -> list[Any]:
    """The connection's events up to and including the first of type ``kind``."""
    seen = []
    async with asyncio.timeout(timeout_s):
        while True:
            event = await conn.recv()
            seen.append(event)
            if event.type == kind:
                return seen
