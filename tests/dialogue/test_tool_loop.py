"""The tool loop end to end on the tiny model: calls, results fed back, failures, limits."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import (
    ClientToolRequested,
    TextDelta,
    ToolCall,
    ToolResult,
    ToolStarted,
    TurnDone,
)
from assistant.tools import ToolRegistry, tool
from tests.dialogue.house import turn

LIGHT_ON = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}}
LIGHT_OFF = {"name": "set_light", "arguments": {"room": "hall", "state": "off"}}


def results(events) -> list[ToolResult]:
    return [e for e in events if isinstance(e, ToolResult)]


async def test_tool_call_runs_and_its_result_reaches_the_model(scripted, house, speech) -> None:
    """Utterance, tool call, real handler, result in the next prompt, then the final text."""
    worker, script = scripted
    script.say("Sure.", [LIGHT_ON])
    script.say("The kitchen light is on.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(audio=speech("turn on the kitchen light"))
    events = await turn(dialogue)
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert house.runs == [(call.id, "set_light", {"room": "kitchen", "state": "on"})]
    assert [r.ok for r in results(events)] == [True]
    fed_back = f'[TOOL_RESULTS]{call.id}[TOOL_CONTENT]{{"room": "kitchen", "state": "on"}}'
    assert fed_back in script.prompts[1]
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert done.text == "Sure.The kitchen light is on."
    assert done.metrics.model_calls == 2
    assert set(done.metrics.tool_durations_ms) == {call.id}


async def test_events_of_a_tool_round_come_in_order(scripted, house) -> None:
    """The call is announced, started, finished, then the final reply streams."""
    worker, script = scripted
    script.say(None, [LIGHT_ON])
    script.say("Done.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="light on")
    kinds = [type(e) for e in await turn(dialogue)]
    assert kinds.index(ToolCall) < kinds.index(ToolStarted) < kinds.index(ToolResult)
    assert kinds.index(ToolResult) < kinds.index(TextDelta)


async def test_parallel_calls_run_concurrently_and_keep_call_order(scripted, house) -> None:
    """Two calls of one reply overlap in time; their results follow in call order."""
    worker, script = scripted
    script.say(None, [LIGHT_ON, LIGHT_OFF])
    script.say("Both done.")
    house.expected_overlap = 2
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="kitchen on, hall off")
    await turn(dialogue)
    assert house.max_active == 2
    calls_message, first, second, _ = dialogue.history[1:]
    ids = [c.id for c in calls_message.tool_calls]
    assert [first.tool_call_id, second.tool_call_id] == ids


async def test_failing_handler_becomes_a_result_the_model_reads(scripted, house) -> None:
    """A handler that raises gives an ok=False result; the model is asked again and answers."""
    worker, script = scripted
    script.say(None, [{"name": "read_thermostat", "arguments": {}}])
    script.say("The thermostat is not answering.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="how warm is it")
    events = await turn(dialogue)
    (result,) = results(events)
    assert not result.ok and "does not answer" in result.content
    assert "the thermostat does not answer" in script.prompts[1]
    assert events[-1].text == "The thermostat is not answering."


async def test_tool_timeout_becomes_a_timeout_result(scripted, house) -> None:
    """A handler past its timeout is stopped and the model reads a timeout error."""
    worker, script = scripted
    script.say(None, [{"name": "stuck_blinds", "arguments": {}}])
    script.say("The blinds did not respond.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="close the blinds")
    events = await turn(dialogue)
    (result,) = results(events)
    assert not result.ok and "did not finish within 0.3 s" in result.content
    assert events[-1].finish_reason == "stop"


async def test_unknown_tool_is_answered_with_an_error_result(scripted, house) -> None:
    """A call to a tool nobody declared gets an error result, and the history stays valid."""
    worker, script = scripted
    script.say(None, [{"name": "launch_rocket", "arguments": {}}])
    script.say("I cannot do that.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="launch")
    events = await turn(dialogue)
    (result,) = results(events)
    assert not result.ok and "unknown tool" in result.content
    assert isinstance(dialogue.history[2], ToolMessage)


async def test_tool_round_limit_ends_with_a_failure_message(scripted, house) -> None:
    """A model that keeps calling tools is stopped after max_tool_rounds; history stays valid."""
    worker, script = scripted
    for _ in range(3):
        script.say(None, [LIGHT_ON])
    settings = DialogueSettings(max_tool_rounds=2, tool_round_limit_message="I gave up.")
    dialogue = Dialogue(worker, house.tools, settings)
    dialogue.add_user_turn(text="keep going")
    events = await turn(dialogue)
    assert len(house.runs) == 2
    done = events[-1]
    assert done.finish_reason == "length" and done.text.endswith("I gave up.")
    last_result = results(events)[-1]
    assert not last_result.ok and "tool-round limit" in last_result.content
    assert isinstance(dialogue.history[-1], AssistantMessage)
    assert dialogue.history[-1].content == "I gave up."


async def test_client_tool_waits_for_the_client_output(scripted) -> None:
    """A client tool pauses the loop until provide_tool_output; the output reaches the model."""
    worker, script = scripted
    script.say(None, [{"name": "get_location", "arguments": {}}])
    script.say("You are in Lyon.")
    dialogue = Dialogue(worker)
    dialogue.set_client_tools(
        [{"type": "function", "name": "get_location", "description": "Where the user is."}]
    )
    dialogue.add_user_turn(text="where am I")
    events = []
    async for event in dialogue.respond():
        events.append(event)
        if isinstance(event, ClientToolRequested):
            dialogue.provide_tool_output(event.call.id, json.dumps({"city": "Lyon"}))
    (result,) = results(events)
    assert result.ok and result.content == '{"city": "Lyon"}'
    assert '"city": "Lyon"' in script.prompts[1]
    assert events[-1].text == "You are in Lyon."


async def test_client_calls_of_one_reply_are_handed_out_together(scripted) -> None:
    """Two client calls of one reply are requested together once the reply has ended; each
    output is accepted."""
    worker, script = scripted
    here = {"name": "get_location", "arguments": {}}
    script.say(None, [here, {"name": "get_location", "arguments": {"precise": True}}])
    script.say("You are in Lyon.")
    dialogue = Dialogue(worker)
    dialogue.set_client_tools([{"type": "function", "name": "get_location"}])
    dialogue.add_user_turn(text="where am I")
    events = []
    async for event in dialogue.respond():
        events.append(event)
        if isinstance(event, ClientToolRequested):
            dialogue.provide_tool_output(event.call.id, json.dumps({"city": "Lyon"}))
    kinds = [type(e).__name__ for e in events if isinstance(e, ToolCall | ClientToolRequested)]
    assert kinds == ["ToolCall", "ToolCall", "ClientToolRequested", "ClientToolRequested"]
    assert [r.ok for r in results(events)] == [True, True]
    assert events[-1].text == "You are in Lyon."


async def test_a_client_call_answered_before_its_round_ends_is_still_handed_out(
    scripted, house
) -> None:
    """Output sent as soon as the call is made (its round's server tool still runs) counts as
    its answer, and the call is handed out with its round all the same (so a Realtime response
    ends there as usual)."""
    worker, script = scripted
    slow = {"name": "slow_switch", "arguments": {"name": "fan"}}
    script.say(None, [slow, {"name": "get_location", "arguments": {}}])
    script.say("You are in Lyon.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.set_client_tools([{"type": "function", "name": "get_location"}])
    dialogue.add_user_turn(text="fan on, and where am I")
    events = []
    async for event in dialogue.respond():
        events.append(event)
        if isinstance(event, ToolCall) and event.name == "get_location":
            dialogue.provide_tool_output(event.id, json.dumps({"city": "Lyon"}))
            house.release()
    requested = [e.call.name for e in events if isinstance(e, ClientToolRequested)]
    assert requested == ["get_location"]
    assert [r.content for r in results(events) if r.name == "get_location"] == [
        json.dumps({"city": "Lyon"})
    ]
    assert events[-1].text == "You are in Lyon."


async def test_client_tool_without_an_answer_times_out(scripted) -> None:
    """A client that never answers gives a timeout result after client_tool_timeout_s."""
    worker, script = scripted
    script.say(None, [{"name": "get_location", "arguments": {}}])
    script.say("I could not find out.")
    dialogue = Dialogue(worker, settings=DialogueSettings(client_tool_timeout_s=0.2))
    dialogue.set_client_tools(
        [{"type": "function", "function": {"name": "get_location", "parameters": {}}}]
    )
    dialogue.add_user_turn(text="where am I")
    (result,) = results(await turn(dialogue))
    assert not result.ok and "within 0.2 s" in result.content


async def test_output_for_an_unknown_client_call_is_refused(scripted) -> None:
    """Output for a call that is not waiting raises ValueError."""
    worker, _ = scripted
    dialogue = Dialogue(worker)
    with pytest.raises(ValueError, match="abcdefghi"):
        dialogue.provide_tool_output("abcdefghi", "{}")


async def test_client_tool_named_like_a_server_tool_is_refused(scripted, house) -> None:
    """A client cannot shadow a server tool."""
    worker, _ = scripted
    dialogue = Dialogue(worker, house.tools)
    with pytest.raises(ValueError, match="set_light"):
        dialogue.set_client_tools([{"type": "function", "name": "set_light"}])


async def test_tools_reach_the_prompt(scripted, house) -> None:
    """Server and client tools are offered to the model in [AVAILABLE_TOOLS]."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools)
    dialogue.set_client_tools([{"type": "function", "name": "get_location"}])
    dialogue.add_user_turn(text="hi")
    await turn(dialogue)
    prompt = script.prompts[-1]
    tools = prompt[prompt.index("[AVAILABLE_TOOLS]") : prompt.index("[/AVAILABLE_TOOLS]")]
    assert '"set_light"' in tools and '"get_location"' in tools


async def test_slow_tool_does_not_block_the_event_loop(scripted, house) -> None:
    """While a tool runs, other coroutines keep running (the loop is never blocked)."""
    worker, script = scripted
    script.say(None, [{"name": "slow_switch", "arguments": {"name": "fan"}}])
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="fan")
    responding = asyncio.create_task(turn(dialogue))
    await house.started.wait()
    assert dialogue.is_responding
    house.release()
    events = await responding
    assert results(events)[0].ok


class _BrokenRegistry(ToolRegistry):
    """A registry with a bug: execute raises instead of returning a failed result."""

    async def execute(self, call: ToolCall, *, conversation_id: str | None = None) -> Any:
        raise RuntimeError("registry bug")


@tool(name="set_light")
def _set_light(room: str, state: str) -> dict[str, str]:
    """Turn the light of a room on or off."""
    return {"room": room, "state": state}


async def test_a_registry_that_raises_gives_the_model_an_error_result(scripted, caplog) -> None:
    """An exception escaping the registry becomes an error result that the model reads (not a
    silent "cancelled"), and it is logged with its traceback."""
    worker, script = scripted
    script.say(None, [LIGHT_ON])
    script.say("Sorry, that failed.")
    dialogue = Dialogue(worker, _BrokenRegistry.from_functions([_set_light]))
    dialogue.add_user_turn(text="kitchen light on")
    with caplog.at_level(logging.ERROR, logger="assistant.conversation.turn"):
        events = await turn(dialogue)
    (result,) = results(events)
    assert not result.ok and "RuntimeError: registry bug" in result.content
    assert "registry bug" in script.prompts[-1]
    assert events[-1].finish_reason == "stop" and events[-1].text == "Sorry, that failed."
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and "registry bug" in str(record.exc_info[1])
