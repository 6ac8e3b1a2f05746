"""Closing a session: nothing starts afterwards, nothing runs on, nothing stays cached."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from assistant.config import VadSettings
from assistant.conversation.dialogue import Dialogue
from assistant.server.realtime.protocol import ProtocolError, parse_client_event
from assistant.server.realtime.session import RealtimeSession
from assistant.tools import ToolRegistry, tool
from tests.server.wire import events_until, next_event, open_session, pcm16_b64

SILENCE = np.zeros(1600, dtype=np.int16)


def _text_item(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


def _event(frame: dict) -> object:
    return parse_client_event(json.dumps(frame))


async def test_speech_heard_while_closing_starts_no_response(
    scripted_worker, script, speech_16k
) -> None:
    """An utterance the (threaded) VAD finds while close() runs is not answered: no response
    starts on a closed session."""
    worker, _ = scripted_worker
    script.say("Too late.")
    sent: list[dict] = []
    session = RealtimeSession(
        Dialogue(worker),
        sent.append,
        model_name="voxtral",
        vad_settings=VadSettings(backend="silero"),
    )
    rate = {
        "format": {"type": "audio/pcm", "rate": 16000},
        "turn_detection": {"type": "server_vad"},
    }
    update = {"type": "session.update", "session": {"audio": {"input": rate}}}
    await session.handle(_event(update))
    # Built: the next append goes straight to the VAD thread.
    assert await session._vad.ready()
    audio = pcm16_b64(np.concatenate([speech_16k, np.zeros(16000, dtype=np.int16)]))
    appending = asyncio.create_task(
        session.handle(_event({"type": "input_audio_buffer.append", "audio": audio}))
    )
    await asyncio.sleep(0)  # the append now waits for the VAD thread
    await session.close()
    with pytest.raises(ProtocolError, match="closing"):
        await appending
    assert not session.responding
    assert "response.created" not in [e["type"] for e in sent]


async def test_close_returns_with_the_response_ended(scripted_worker, script) -> None:
    """close() with a server tool still running ends the response (one response.done) before
    it returns, within its wait."""
    worker, _ = scripted_worker
    started, release = asyncio.Event(), asyncio.Event()

    @tool(timeout_s=30)
    async def slow_thing() -> str:
        """Do a slow thing."""
        started.set()
        await release.wait()
        return "done"

    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    sent: list[dict] = []
    tools = ToolRegistry.from_functions([slow_thing])
    session = RealtimeSession(Dialogue(worker, tools), sent.append, model_name="voxtral")
    await session.handle(_event(json.loads(_text_item("Do it."))))
    await session.handle(_event({"type": "response.create"}))
    async with asyncio.timeout(10):
        await started.wait()
    async with asyncio.timeout(1.5):
        await session.close(wait_s=0.2)
    assert not session.responding
    done = [e["response"] for e in sent if e["type"] == "response.done"]
    assert [d["status"] for d in done] == ["cancelled"]
    release.set()
    await asyncio.sleep(0.05)


async def test_a_closed_session_leaves_no_cached_conversation(
    server, script, scripted_worker
) -> None:
    """When a client leaves, the model worker forgets its conversation's KV cache."""
    worker, _ = scripted_worker
    script.say("Hello.")
    ws = await open_session(server)
    await ws.send(json.dumps({"type": "session.update", "session": {}}))
    session_id = (await next_event(ws, "session.updated"))["session"]["id"]
    await ws.send(_text_item("Hi."))
    await ws.send(json.dumps({"type": "response.create"}))
    await events_until(ws, "response.done")
    await worker.transcribe(SILENCE)  # the model thread has stored the conversation
    assert worker.engine.store.conversation(session_id) is not None
    await ws.close()
    async with asyncio.timeout(5):
        while server.health()["sessions"]:  # noqa: ASYNC110 - the server's own report, polled
            await asyncio.sleep(0.01)
    await worker.transcribe(SILENCE)  # served after the forget queued before it
    assert worker.engine.store.conversation(session_id) is None
