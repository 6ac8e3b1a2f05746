"""session.update: refused values change nothing; accepted ones stay within the server's limits."""

from __future__ import annotations

import json

import pytest

from tests.server.wire import events_until, next_event, open_session


def _text_item(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


async def _turn(ws, text: str) -> dict:
    """One typed turn and its response; return response.done's response."""
    await ws.send(_text_item(text))
    await ws.send(json.dumps({"type": "response.create"}))
    return (await events_until(ws, "response.done"))[-1]["response"]


@pytest.mark.parametrize("limit", [-5, 0, 4097, "10"])
async def test_a_max_output_tokens_out_of_range_is_refused_and_changes_nothing(
    server, limit
) -> None:
    """max_output_tokens outside 1..4096 (or "inf") gets invalid_value naming the field and
    the event; the rest of that update is not applied either."""
    ws = await open_session(server)
    update = {"instructions": "Be terse.", "max_output_tokens": limit}
    await ws.send(json.dumps({"type": "session.update", "event_id": "u1", "session": update}))
    error = (await next_event(ws))["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "invalid_value",
        "session.max_output_tokens",
        "u1",
    )
    assert "from 1 to 4096" in error["message"]
    await ws.send(json.dumps({"type": "session.update", "session": {}}))
    session = (await next_event(ws, "session.updated"))["session"]
    assert (session["instructions"], session["max_output_tokens"]) == ("", "inf")
    await ws.close()


async def test_a_large_max_output_tokens_keeps_the_earlier_turns(
    server, script, scripted_worker, monkeypatch
) -> None:
    """On a model with a 4096-token context, max_output_tokens 4096 is held to the server's own
    reply limit: the next prompt still has room for the first turn."""
    worker, _ = scripted_worker
    monkeypatch.setattr(worker, "context_tokens", 4096)
    script.say("Noted, Bob.")
    script.say("Your name is Bob.")
    ws = await open_session(server)
    assert (await _turn(ws, "Remember: my name is Bob."))["status"] == "completed"
    await ws.send(json.dumps({"type": "session.update", "session": {"max_output_tokens": 4096}}))
    updated = await next_event(ws, "session.updated")
    assert updated["session"]["max_output_tokens"] == 512  # the server's max_new_tokens
    assert (await _turn(ws, "What is my name?"))["status"] == "completed"
    assert "my name is Bob" in script.prompts[-1]
    await ws.close()
