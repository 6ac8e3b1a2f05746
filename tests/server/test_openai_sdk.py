"""Conformance: the official openai SDK's realtime client talks to the server unchanged."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from tests.support.realtime_sdk import TOKEN, events_until, sdk_client

pytestmark = pytest.mark.timeout(120)


def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


@pytest.fixture
async def sdk_server(start_server):
    """A token-protected server with the server-side get_weather tool."""
    async with start_server(token=TOKEN) as running:
        yield running


async def test_server_vad_turn_with_a_server_side_tool(sdk_server, script, speech_24k) -> None:
    """24 kHz speech → server VAD commit → tool call, its result, and the final text."""
    script.say(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say("It is 21 degrees and clear in Paris.")
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "You are a helpful voice assistant.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        updated = (await events_until(conn, "session.updated"))[-1]
        assert updated.session.audio.input.format.rate == 24000
        audio = np.concatenate([speech_24k, np.zeros(24000 * 2, dtype=np.int16)])
        for start in range(0, len(audio), 2400):
            chunk = audio[start : start + 2400].astype("<i2").tobytes()
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        events = await events_until(conn, "response.done")

    kinds = _types(events)
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.function_call_arguments.done",
        "response.output_text.done",
        "response.done",
    ]
    assert [k for k in kinds if k in order] == order
    call = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    outputs = [
        e.item
        for e in events
        if e.type == "conversation.item.created" and e.item.type == "function_call_output"
    ]
    assert [o.call_id for o in outputs] == [call.call_id]
    assert json.loads(outputs[0].output)["temperature_c"] == 21
    text = next(e for e in events if e.type == "response.output_text.done").text
    assert text == "It is 21 degrees and clear in Paris."
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == text
    done = events[-1].response
    assert done.status == "completed"
    assert done.usage.output_tokens > 0
    assert [item.type for item in done.output] == ["function_call", "message"]
    assert done.model_extra["metrics"]["speech_end_to_done_ms"] > 0


async def test_client_side_tool_round_trip(sdk_server, script) -> None:
    """A client-declared tool: the response stops at the call, function_call_output resumes."""
    script.say(tool_calls=[{"name": "get_time", "arguments": {"zone": "UTC"}}])
    script.say("It is noon.")
    tool = {
        "type": "function",
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    }
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await conn.session.update(session={"type": "realtime", "tools": [tool]})
        await events_until(conn, "session.updated")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What time is it?"}],
            }
        )
        await conn.response.create()
        first = await events_until(conn, "response.done")
        call = next(e for e in first if e.type == "response.function_call_arguments.done")
        assert (call.name, json.loads(call.arguments)) == ("get_time", {"zone": "UTC"})
        assert first[-1].response.status == "completed"
        assert [i.type for i in first[-1].response.output] == ["function_call"]

        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": '"12:00"'}
        )
        await conn.response.create()
        second = await events_until(conn, "response.done")

    created = next(e for e in second if e.type == "conversation.item.created")
    assert created.item.type == "function_call_output"
    assert next(e for e in second if e.type == "response.output_text.done").text == "It is noon."
    assert second[-1].response.status == "completed"


async def test_response_cancel_mid_reply(sdk_server, script) -> None:
    """response.cancel during a long reply ends it with status cancelled."""
    script.say("la " * 400)
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Sing."}],
            }
        )
        await conn.response.create()
        await events_until(conn, "response.output_text.delta")
        await conn.response.cancel()
        events = await events_until(conn, "response.done")
    done = events[-1].response
    assert done.status == "cancelled"
    assert done.status_details.reason == "client_cancelled"
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert len(streamed) < len("la " * 400)
