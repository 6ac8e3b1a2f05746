"""Cancelling while a server tool runs: the session stays responsive and ends on time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from assistant import realtime_session
from assistant.tools import ToolRegistry, tool
from tests.server.wire import events_until, next_event, open_session

CANCEL_WAIT_S = 2.0
"""The session's bound on a cancelled response's wind-down, shortened for these tests."""


@dataclass
class Gate:
    """A server tool that runs until the test lets it finish."""

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


@pytest.fixture
async def gate(monkeypatch) -> AsyncIterator[Gate]:
    """A gated tool, released after the test so that no task outlives it."""
    monkeypatch.setattr(realtime_session, "CANCEL_WAIT_S", CANCEL_WAIT_S)
    gate = Gate()
    yield gate
    gate.release.set()
    await asyncio.sleep(0.05)


def _text_item(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


async def _start_slow_response(ws, gate: Gate) -> str:
    """Ask for a reply whose tool call blocks in the gate; return the response id."""
    await ws.send(_text_item("Do the slow thing."))
    await ws.send(json.dumps({"type": "response.create"}))
    created = await next_event(ws, "response.created")
    async with asyncio.timeout(10):
        await gate.started.wait()
    return str(created["response"]["id"])


async def test_cancel_during_a_slow_tool_leaves_the_session_responsive(
    start_server, script, gate
) -> None:
    """response.cancel while a server tool runs is acted on at once: the next client event is
    answered without waiting for the tool, response.done follows within CANCEL_WAIT_S, only
    once, and the tool's result still reaches the next prompt."""
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    script.say("You are welcome.")
    async with start_server(tools=gate.registry()) as server:
        ws = await open_session(server)
        response_id = await _start_slow_response(ws, gate)
        started_s = time.monotonic()
        await ws.send(json.dumps({"type": "response.cancel"}))
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await next_event(ws, "input_audio_buffer.cleared")
        assert time.monotonic() - started_s < CANCEL_WAIT_S / 2
        done = await next_event(ws, "response.done")
        assert time.monotonic() - started_s < CANCEL_WAIT_S + 1.5
        assert done["response"]["id"] == response_id
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        gate.release.set()
        await ws.send(_text_item("Thanks."))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
        await ws.close()
    (second,) = [e["response"] for e in events if e["type"] == "response.done"]
    assert second["id"] != response_id and second["status"] == "completed"
    assert "the slow thing is done" in script.prompts[-1]


async def test_shutdown_honours_its_grace_period_while_a_tool_runs(
    start_server, script, gate
) -> None:
    """A shutdown with a 0.5 s grace does not wait for a server tool that runs on: the client
    gets its response.done and the 1001 close promptly."""
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    async with start_server(tools=gate.registry(), limits={"shutdown_grace_s": 0.5}) as server:
        ws = await open_session(server)
        await _start_slow_response(ws, gate)
        started_s = time.monotonic()
        shutdown = asyncio.create_task(server.shutdown())
        done = await next_event(ws, "response.done")
        await shutdown
        took_s = time.monotonic() - started_s
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert took_s < 0.5 + 1.0
    assert done["response"]["status"] == "cancelled"
    assert ws.close_code == 1001
