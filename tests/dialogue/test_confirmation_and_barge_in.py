"""Confirm tools answered by the next user turn, and barge-in during replies and tools."""

from __future__ import annotations

import asyncio

from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage, UserMessage

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import (
    ConfirmationRequested,
    TextDelta,
    ToolResult,
    ToolStarted,
    TurnDone,
)
from tests.dialogue.house import turn

UNLOCK = {"name": "unlock_door", "arguments": {"door": "front"}}
LIGHT_ON = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}}
LONG_REPLY = " ".join(["The weather today is sunny and warm in the living room."] * 8)


async def _ask_to_unlock(dialogue: Dialogue, script) -> list:
    script.say(None, [UNLOCK])
    dialogue.add_user_turn(text="unlock the front door")
    return await turn(dialogue)


async def test_confirm_tool_asks_and_waits(scripted, house) -> None:
    """A confirm tool does not run: the turn ends asking for a yes or no."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools)
    events = await _ask_to_unlock(dialogue, script)
    (asked,) = [e for e in events if isinstance(e, ConfirmationRequested)]
    assert asked.prompt == "Unlock a door of the house (door front)? Say yes or no."
    assert events[-1].finish_reason == "tool_calls" and events[-1].text == asked.prompt
    assert house.runs == [] and dialogue.awaiting_confirmation
    assert [type(m) for m in dialogue.history] == [UserMessage]


async def test_spoken_yes_runs_the_confirmed_tool(scripted, house, speech) -> None:
    """A spoken yes (through transcription) runs the tool and the model answers."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools)
    await _ask_to_unlock(dialogue, script)
    script.hear("Yes, please.")
    script.say("The front door is open.")
    dialogue.add_user_turn(audio=speech("yes please"))
    events = await turn(dialogue)
    assert [name for _, name, _ in house.runs] == ["unlock_door"]
    assert [r.ok for r in events if isinstance(r, ToolResult)] == [True]
    assert events[-1].text == "The front door is open."
    kinds = [type(m) for m in dialogue.history]
    assert kinds == [UserMessage, AssistantMessage, ToolMessage, AssistantMessage]


async def test_no_cancels_the_confirmed_tool(scripted, house) -> None:
    """A typed no records a cancelled result; the handler never runs."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools)
    await _ask_to_unlock(dialogue, script)
    script.say("Okay, the door stays locked.")
    dialogue.add_user_turn(text="No.")
    events = await turn(dialogue)
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert not result.ok and "did not confirm" in result.content
    assert house.runs == []
    assert "did not confirm" in script.prompts[-1]


async def test_a_new_request_instead_of_an_answer_cancels_and_is_answered(scripted, house) -> None:
    """Anything but a clear yes cancels; a new request then joins the history as user input."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools)
    await _ask_to_unlock(dialogue, script)
    script.say("It is noon.")
    dialogue.add_user_turn(text="what time is it")
    await turn(dialogue)
    assert house.runs == []
    kinds = [type(m) for m in dialogue.history]
    assert kinds == [UserMessage, AssistantMessage, ToolMessage, UserMessage, AssistantMessage]


async def test_other_calls_of_the_reply_run_before_the_question(scripted, house) -> None:
    """In a reply with a confirm call and a plain call, the plain one runs at once."""
    worker, script = scripted
    script.say(None, [LIGHT_ON, UNLOCK])
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="light on and unlock")
    events = await turn(dialogue)
    assert [name for _, name, _ in house.runs] == ["set_light"]
    assert any(isinstance(e, ConfirmationRequested) for e in events)


async def test_barge_in_cuts_the_reply_to_what_was_delivered(scripted) -> None:
    """After an interruption the assistant message holds only the delivered text."""
    worker, script = scripted
    script.say(LONG_REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="weather?")
    events, delivered, outcomes = [], "", []
    async for event in dialogue.respond():
        events.append(event)
        if isinstance(event, TextDelta):
            delivered += event.text
            if len(delivered) > 10 and not outcomes:
                outcomes.append(await dialogue.interrupt(delivered_text=delivered[:8]))
    assert outcomes == [True]
    done = events[-1]
    assert isinstance(done, TurnDone) and done.finish_reason == "cancelled"
    assert done.text == LONG_REPLY[:8]
    assert dialogue.history[-1].content == LONG_REPLY[:8]
    assert not dialogue.is_responding


async def test_barge_in_before_any_delivered_text_leaves_no_reply(scripted) -> None:
    """Nothing delivered: no assistant message, and the next input joins the same user turn."""
    worker, script = scripted
    script.say(LONG_REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="weather?")
    async for event in dialogue.respond():
        if isinstance(event, TextDelta):
            await dialogue.interrupt(delivered_text="")
    dialogue.add_user_turn(text="actually, the time")
    (user,) = dialogue.history
    assert [c.text for c in user.content] == ["weather?", "actually, the time"]


async def test_barge_in_during_a_tool_keeps_its_result(scripted, house) -> None:
    """A started tool finishes and its result is kept; the unstarted confirm call is cancelled."""
    worker, script = scripted
    script.say(None, [{"name": "slow_switch", "arguments": {"name": "fan"}}, UNLOCK])
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="fan, and unlock")
    events: list = []
    consumer = asyncio.create_task(_collect(dialogue, events))
    await house.started.wait()
    interrupting = asyncio.create_task(dialogue.interrupt())
    await asyncio.sleep(0.05)
    assert not interrupting.done()  # the started tool is still running: it is not abandoned
    house.release()
    assert await interrupting
    await consumer
    by_name = {r.name: r for r in events if isinstance(r, ToolResult)}
    assert by_name["slow_switch"].ok
    assert not by_name["unlock_door"].ok and "interrupted" in by_name["unlock_door"].content
    assert house.runs_per_call() == {by_name["slow_switch"].call_id: 1}
    assert [type(m) for m in dialogue.history] == [UserMessage, AssistantMessage] + [
        ToolMessage
    ] * 2
    assert events[-1].finish_reason == "cancelled"
    assert sum(isinstance(e, ToolStarted) for e in events) == 1


async def _collect(dialogue: Dialogue, into: list) -> None:
    async for event in dialogue.respond():
        into.append(event)


async def test_barge_in_is_ignored_when_disabled(scripted) -> None:
    """With interrupt_response off, interrupt() leaves the reply alone."""
    worker, script = scripted
    script.say("Hello there, friend.")
    dialogue = Dialogue(worker, settings=DialogueSettings(interrupt_response=False))
    dialogue.add_user_turn(text="hi")
    interrupted = []
    async for event in dialogue.respond():
        if isinstance(event, TextDelta) and not interrupted:
            interrupted.append(await dialogue.interrupt())
        last = event
    assert interrupted == [False]
    assert last.finish_reason == "stop" and last.text == "Hello there, friend."


async def test_short_speech_does_not_interrupt(scripted) -> None:
    """Speech shorter than min_interrupt_speech_ms is not a barge-in."""
    worker, script = scripted
    script.say(LONG_REPLY)
    dialogue = Dialogue(worker, settings=DialogueSettings(min_interrupt_speech_ms=300))
    dialogue.add_user_turn(text="weather?")
    outcomes = []
    async for event in dialogue.respond():
        if isinstance(event, TextDelta) and not outcomes:
            outcomes.append(await dialogue.interrupt(speech_ms=120))
        last = event
    assert outcomes == [False] and last.finish_reason == "stop"


async def test_input_during_a_reply_waits_for_it(scripted) -> None:
    """Input that arrives while a reply runs (no barge-in) is answered by the next response."""
    worker, script = scripted
    script.say("First answer.")
    script.say("Second answer.")
    dialogue = Dialogue(worker, settings=DialogueSettings(interrupt_response=False))
    dialogue.add_user_turn(text="first")
    async for event in dialogue.respond():
        if isinstance(event, TextDelta) and len(dialogue.history) == 1:
            dialogue.add_user_turn(text="second")
    assert [type(m) for m in dialogue.history] == [UserMessage, AssistantMessage, UserMessage]
    await turn(dialogue)
    assert dialogue.history[-1].content == "Second answer."


async def test_leaving_the_stream_early_cancels_the_response(scripted) -> None:
    """Breaking out of respond() cancels the reply and settles the history."""
    worker, script = scripted
    script.say(LONG_REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="weather?")
    stream = dialogue.respond()
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    assert not dialogue.is_responding
    assert dialogue.history[-1].role == "assistant"


async def test_barge_in_after_the_reply_ended_cuts_it_to_what_was_heard(scripted) -> None:
    """A reply generated in full but still being spoken is cut in the history on barge-in."""
    worker, script = scripted
    script.say(LONG_REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="weather?")
    await turn(dialogue)
    assert not await dialogue.interrupt(delivered_text=LONG_REPLY[:20])
    assert dialogue.history[-1].content == LONG_REPLY[:20]


async def test_a_late_cut_never_reaches_a_reply_to_newer_input(scripted) -> None:
    """Once the user has said something new, a late barge-in leaves the history alone."""
    worker, script = scripted
    script.say(LONG_REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="weather?")
    await turn(dialogue)
    dialogue.add_user_turn(text="thanks")
    await dialogue.interrupt(delivered_text="")
    assert dialogue.history[1].content == LONG_REPLY
