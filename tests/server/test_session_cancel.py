"""Cancelling while a server tool runs: the session stays responsive and ends on time."""

from __future__ import annotations

import asyncio
import json
import time

from tests.server.wire import CANCEL_WAIT_S, Gate, events_until, next_event, open_session


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


async def test_cancel_right_after_create_cancels_before_the_model_runs(
    start_server, script
) -> None:
    """response.cancel sent right behind response.create ends that response cancelled, with
    no reply text; the input stays unanswered, so the next response.create answers it."""
    script.say("The one and only reply.")
    async with start_server() as server:
        ws = await open_session(server)
        await ws.send(_text_item("Hello."))
        await next_event(ws, "conversation.item.created")
        await ws.send(json.dumps({"type": "response.create"}))
        await ws.send(json.dumps({"type": "response.cancel"}))
        cancelled = await events_until(ws, "response.done")
        await ws.send(json.dumps({"type": "response.create"}))
        answered = await events_until(ws, "response.done")
        await ws.close()
    done = cancelled[-1]["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "client_cancelled")
    assert [e for e in cancelled if e["type"] == "response.output_text.delta"] == []
    assert [e["type"] for e in answered if e["type"] in ("error", "response.created")] == [
        "response.created"
    ]
    assert answered[-1]["response"]["status"] == "completed"
    text = next(e for e in answered if e["type"] == "response.output_text.done")["text"]
    assert text == "The one and only reply."


async def test_cancel_of_a_response_waiting_for_the_previous_one(
    start_server, script, gate
) -> None:
    """A response that waits for a cancelled one to settle (its server tool still runs) is
    cancelled by response.cancel too: one response.done, cancelled, with no reply; its input is
    answered by the next response."""
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    script.say("The reply to the new input.")
    async with start_server(tools=gate.registry()) as server:
        ws = await open_session(server)
        await _start_slow_response(ws, gate)
        await ws.send(json.dumps({"type": "response.cancel"}))
        await next_event(ws, "response.done")  # ended by the session; the tool runs on
        await ws.send(_text_item("Never mind, something else."))
        await ws.send(json.dumps({"type": "response.create"}))
        created = await next_event(ws, "response.created")
        await ws.send(json.dumps({"type": "response.cancel"}))
        await asyncio.sleep(0.3)
        gate.release.set()  # the first response settles well within CANCEL_WAIT_S
        second = await events_until(ws, "response.done")
        await ws.send(json.dumps({"type": "response.create"}))
        third = await events_until(ws, "response.done")
        await ws.close()
    done = second[-1]["response"]
    assert done["id"] == created["response"]["id"] and done["status"] == "cancelled"
    assert [e for e in second if e["type"] == "response.output_text.delta"] == []
    assert [e["response"]["id"] for e in third if e["type"] == "response.done"] != [done["id"]]
    assert third[-1]["response"]["status"] == "completed"
    text = next(e for e in third if e["type"] == "response.output_text.done")["text"]
    assert text == "The reply to the new input."
    assert "Never mind, something else." in script.prompts[-1]
