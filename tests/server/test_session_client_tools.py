"""Client tools over /v1/realtime: a round's calls go out together, each timed from then on."""

from __future__ import annotations

import asyncio
import json
import time

from assistant.conversation.dialogue import DialogueSettings
from assistant.tools import ToolRegistry, tool
from tests.server.wire import events_until, next_event, open_session

LOOKUP = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}
CALL_A = {"name": "lookup", "arguments": {"q": "a"}, "id": "callAAAAA"}
CALL_B = {"name": "lookup", "arguments": {"q": "b"}, "id": "callBBBBB"}


def _text_item(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


def _output(call_id: str, output: str) -> str:
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return json.dumps({"type": "conversation.item.create", "item": item})


async def _session_with_lookup(server):
    ws = await open_session(server)
    await ws.send(json.dumps({"type": "session.update", "session": {"tools": [LOOKUP]}}))
    await next_event(ws, "session.updated")
    return ws


def _function_calls(response: dict) -> list[str]:
    return [o["call_id"] for o in response["output"] if o["type"] == "function_call"]


async def _answer(ws, call_ids: list[str]) -> None:
    """Send an output for each call; each must be accepted."""
    for call_id in call_ids:
        await ws.send(_output(call_id, json.dumps({"found": call_id})))
        created = await next_event(ws)
        assert created["type"] == "conversation.item.created", created
        assert created["item"]["call_id"] == call_id


async def test_two_client_calls_of_one_reply_end_one_response_together(
    start_server, script
) -> None:
    """A reply calling two client tools ends its response with both function calls; a client
    that answers them within the timeout has both outputs accepted and read by the model."""
    script.say(tool_calls=[CALL_A, CALL_B])
    script.say("Both looked up.")
    settings = DialogueSettings(client_tool_timeout_s=1.0)
    async with start_server(dialogue_settings=settings) as server:
        ws = await _session_with_lookup(server)
        await ws.send(_text_item("Look up a and b."))
        await ws.send(json.dumps({"type": "response.create"}))
        first = (await events_until(ws, "response.done"))[-1]["response"]
        assert first["status"] == "completed"
        assert _function_calls(first) == ["callAAAAA", "callBBBBB"]
        await asyncio.sleep(0.6)  # the client takes its time, within the 1 s timeout
        await _answer(ws, _function_calls(first))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
        await ws.close()
    second = events[-1]["response"]
    assert second["status"] == "completed" and _function_calls(second) == []
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == (
        "Both looked up."
    )
    # The client created the output items itself: they are not echoed a second time.
    created = [e["item"]["type"] for e in events if e["type"] == "conversation.item.created"]
    assert "function_call_output" not in created
    prompt = script.prompts[-1]
    assert '{"found": "callAAAAA"}' in prompt and '{"found": "callBBBBB"}' in prompt
    assert "did not return a result" not in prompt


async def test_a_client_call_is_timed_from_when_it_is_handed_out(start_server, script) -> None:
    """A client call made next to a server tool is handed out once that tool is done, and its
    timeout runs from then: an answer 0.6 s later is accepted although the call is older than
    the 1 s timeout."""
    release = asyncio.Event()

    @tool(timeout_s=30)
    async def warm_up() -> str:
        """Warm something up."""
        await release.wait()
        return "warm"

    script.say(tool_calls=[{"name": "warm_up", "arguments": {}, "id": "callWARM1"}, CALL_A])
    script.say("Done.")
    settings = DialogueSettings(client_tool_timeout_s=1.0)
    tools = ToolRegistry.from_functions([warm_up])
    async with start_server(tools=tools, dialogue_settings=settings) as server:
        ws = await _session_with_lookup(server)
        await ws.send(_text_item("Warm up, then look up a."))
        await ws.send(json.dumps({"type": "response.create"}))
        await next_event(ws, "response.function_call_arguments.done")
        await asyncio.sleep(1.2)  # longer than the client timeout
        release.set()
        first = (await events_until(ws, "response.done"))[-1]["response"]
        assert _function_calls(first) == ["callWARM1", "callAAAAA"]
        await asyncio.sleep(0.6)
        await _answer(ws, ["callAAAAA"])
        await ws.send(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
        await ws.close()
    assert events[-1]["response"]["status"] == "completed"
    assert '{"found": "callAAAAA"}' in script.prompts[-1]


async def test_an_output_sent_before_response_done_answers_its_call(
    start_server, script, gate
) -> None:
    """A client that answers a call on its arguments.done, before the round ends: the response
    still ends with the round's calls, and response.create resumes the turn with that output
    (no failed response)."""
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}, CALL_A])
    script.say("Here is what I found.")
    async with start_server(tools=gate.registry()) as server:
        ws = await _session_with_lookup(server)
        await ws.send(_text_item("Look up a."))
        await ws.send(json.dumps({"type": "response.create"}))
        event = await next_event(ws, "response.function_call_arguments.done")
        while event["call_id"] != "callAAAAA":
            event = await next_event(ws, "response.function_call_arguments.done")
        await ws.send(_output("callAAAAA", json.dumps({"found": "a"})))
        await asyncio.sleep(0.2)  # the output is in; the round's server tool still runs
        gate.release.set()
        first = (await events_until(ws, "response.done"))[-1]["response"]
        await ws.send(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
        await ws.close()
    assert first["status"] == "completed"
    assert [o["type"] for o in first["output"]] == ["function_call", "function_call"]
    second = events[-1]["response"]
    assert [e for e in events if e["type"] == "error"] == []
    assert second["status"] == "completed" and _function_calls(second) == []
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == (
        "Here is what I found."
    )
    assert '{"found": "a"}' in script.prompts[-1]


async def _suspend_with_a_server_tool_running(ws, gate) -> None:
    """Leave the turn suspended at a client call that times out; the model's next round then
    starts the gated server tool while the turn is still suspended."""
    await ws.send(_text_item("Look up a."))
    await ws.send(json.dumps({"type": "response.create"}))
    first = (await events_until(ws, "response.done"))[-1]["response"]
    assert _function_calls(first) == ["callAAAAA"]
    async with asyncio.timeout(10):
        await gate.started.wait()


async def test_new_input_while_a_suspended_turn_runs_a_server_tool_is_taken_at_once(
    start_server, script, gate
) -> None:
    """New input drops a suspended turn without waiting for the server tool its next round
    runs: the session answers the next event at once."""
    script.say(tool_calls=[CALL_A])
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    settings = DialogueSettings(client_tool_timeout_s=0.3)
    async with start_server(tools=gate.registry(), dialogue_settings=settings) as server:
        ws = await _session_with_lookup(server)
        await _suspend_with_a_server_tool_running(ws, gate)
        started_s = time.monotonic()
        await ws.send(_text_item("Forget it."))
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await next_event(ws, "input_audio_buffer.cleared")
        took_s = time.monotonic() - started_s
        gate.release.set()
        await ws.close()
    assert took_s < 1.0


async def test_shutdown_honours_its_grace_while_a_suspended_turn_runs_a_server_tool(
    start_server, script, gate
) -> None:
    """A shutdown with a 0.5 s grace does not wait for the server tool of a suspended turn."""
    script.say(tool_calls=[CALL_A])
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    settings = DialogueSettings(client_tool_timeout_s=0.3)
    async with start_server(
        tools=gate.registry(), dialogue_settings=settings, limits={"shutdown_grace_s": 0.5}
    ) as server:
        ws = await _session_with_lookup(server)
        await _suspend_with_a_server_tool_running(ws, gate)
        started_s = time.monotonic()
        shutdown = asyncio.create_task(server.shutdown())
        done, _ = await asyncio.wait({shutdown}, timeout=5)
        took_s = time.monotonic() - started_s
        gate.release.set()
        await shutdown
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert done and took_s < 0.5 + 1.0
    assert ws.close_code == 1001
