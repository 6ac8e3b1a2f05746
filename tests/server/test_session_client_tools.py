"""Client tools over /v1/realtime: a round's calls go out together, each timed from then on."""

from __future__ import annotations

import asyncio
import json

from assistant.dialogue import DialogueSettings
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
