"""Cancellations that land at exact points of a reply, made deterministic by holding the model
thread mid-generation: after a tool call was streamed but before the reply's stream ended."""

from __future__ import annotations

import asyncio

import numpy as np
from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage, UserMessage

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import DialogueEvent, MalformedToolCall, ToolCall, ToolResult, TurnDone
from assistant.testing.forced import reply_tokens
from assistant.testing.tiny_model import EOS_ID
from tests.dialogue.house import House

SLOW = {"name": "slow_switch", "arguments": {"name": "fan"}}
LIGHT_ON = {"name": "set_light", "arguments": {"room": "hall", "state": "on"}}
SILENCE = np.zeros(1600, dtype=np.int16)


async def _collect(dialogue: Dialogue, into: list[DialogueEvent]) -> None:
    async for event in dialogue.respond():
        into.append(event)


def _two_call_reply(script) -> tuple[list[int], int]:
    """A reply with two separate tool-call segments, and the token count after which the first
    call is complete (the second segment's opening token closes it) but the stream goes on."""
    first = reply_tokens(script.tokenizer, None, [SLOW])
    assert first[-1] == EOS_ID
    first = first[:-1]
    return [*first, *reply_tokens(script.tokenizer, None, [LIGHT_ON])], len(first) + 1


async def _interrupt_mid_stream(
    dialogue: Dialogue, script, house: House, events: list[DialogueEvent]
) -> tuple[asyncio.Task[None], asyncio.Task[bool]]:
    """Start a turn, interrupt it while its first tool runs and the model is held mid-reply,
    let the model finish the cancelled reply; return the consumer and the interrupt tasks."""
    tokens, after = _two_call_reply(script)
    gate = script.held_reply(tokens, after_tokens=after)
    dialogue.add_user_turn(text="fan on, and the hall light")
    consumer = asyncio.create_task(_collect(dialogue, events))
    await house.started.wait()  # the model thread is held: the reply's stream has not ended
    interrupting = asyncio.create_task(dialogue.interrupt())
    await asyncio.sleep(0)  # the interrupt has cancelled the stream
    gate.set()
    # The model thread serves requests in order: once this transcription is back, the
    # cancelled reply's stream has ended and the dialogue has read its end.
    await dialogue.worker.transcribe(SILENCE)
    await asyncio.sleep(0.05)
    return consumer, interrupting


async def test_cancel_after_a_streamed_call_waits_for_its_tool(scripted, house) -> None:
    """A tool started from a reply cancelled before its stream ended still finishes before the
    response settles, and its real result (not "cancelled") joins the history."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools, DialogueSettings(transcribe_user=False))
    events: list[DialogueEvent] = []
    consumer, interrupting = await _interrupt_mid_stream(dialogue, script, house, events)
    assert dialogue.is_responding and not interrupting.done()
    house.release()
    assert await interrupting
    await consumer
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.name == "slow_switch" and result.ok
    user, calls, tool_message = dialogue.history
    assert isinstance(user, UserMessage) and isinstance(calls, AssistantMessage)
    assert isinstance(tool_message, ToolMessage) and tool_message.content == result.content
    assert house.runs_per_call() == {result.call_id: 1}
    assert isinstance(events[-1], TurnDone) and events[-1].finish_reason == "cancelled"


async def test_a_call_cut_off_by_the_cancel_is_not_reported_malformed(scripted, house) -> None:
    """The half-written call that a barge-in cut off is dropped silently, not sent as an error."""
    worker, script = scripted
    dialogue = Dialogue(worker, house.tools, DialogueSettings(transcribe_user=False))
    events: list[DialogueEvent] = []
    consumer, interrupting = await _interrupt_mid_stream(dialogue, script, house, events)
    house.release()
    await interrupting
    await consumer
    assert not any(isinstance(e, MalformedToolCall) for e in events)
    assert [c.name for c in events[-1].tool_calls] == ["slow_switch"]


async def test_cancelling_the_consumer_does_not_wait_for_a_started_tool(scripted, house) -> None:
    """A consumer task cancelled while a tool runs ends at once; the tool's result still joins
    the history, and the next respond() waits for it before asking the model."""
    worker, script = scripted
    script.say(None, [SLOW])
    script.say("Anything else?")
    dialogue = Dialogue(worker, house.tools, DialogueSettings(transcribe_user=False))
    dialogue.add_user_turn(text="fan on")
    consumer = asyncio.create_task(_collect(dialogue, []))
    await house.started.wait()
    consumer.cancel()
    async with asyncio.timeout(1):
        await asyncio.wait({consumer})
    assert dialogue.is_responding  # settling: the tool still runs
    dialogue.add_user_turn(text="thanks")
    events: list[DialogueEvent] = []
    answering = asyncio.create_task(_collect(dialogue, events))
    await asyncio.sleep(0.1)
    assert not events  # the model is not asked before the tool's result is in
    house.release()
    await answering
    assert events[-1].text == "Anything else?"
    assert '"state": "flipped"' in script.prompts[-1]
    assert house.runs_per_call() == {dialogue.history[2].tool_call_id: 1}


async def test_closing_a_stopped_stream_does_not_wait_for_a_started_tool(scripted, house) -> None:
    """aclose() of a respond() stream whose response was stop()ped returns at once while a
    started tool runs; the tool's result still joins the history."""
    worker, script = scripted
    script.say(None, [SLOW])
    dialogue = Dialogue(worker, house.tools, DialogueSettings(transcribe_user=False))
    dialogue.add_user_turn(text="fan on")
    stream = dialogue.respond()
    async for event in stream:
        if isinstance(event, ToolCall):
            break
    await house.started.wait()
    assert dialogue.stop()
    async with asyncio.timeout(1):
        await stream.aclose()
    assert dialogue.is_responding  # settling: the tool still runs
    house.release()
    await dialogue.cancel()  # waits for the settle
    assert not dialogue.is_responding
    assert '"state": "flipped"' in dialogue.history[-1].content


async def test_stop_while_a_response_waits_for_the_previous_one_ends_it_unstarted(
    scripted, house
) -> None:
    """stop() reaches a respond() still waiting for a stopped response to settle: it ends
    cancelled without asking the model, and its input waits for the next response."""
    worker, script = scripted
    script.say(None, [SLOW])
    script.say("Anything else?")
    dialogue = Dialogue(worker, house.tools, DialogueSettings(transcribe_user=False))
    dialogue.add_user_turn(text="fan on")
    consumer = asyncio.create_task(_collect(dialogue, []))
    await house.started.wait()
    dialogue.stop()
    dialogue.add_user_turn(text="thanks")
    events: list[DialogueEvent] = []
    waiting = asyncio.create_task(_collect(dialogue, events))
    await asyncio.sleep(0.05)
    assert dialogue.stop()
    house.release()
    await asyncio.gather(consumer, waiting)
    assert [(type(e), e.finish_reason) for e in events if isinstance(e, TurnDone)] == [
        (TurnDone, "cancelled")
    ]
    assert len(events) == 1 and dialogue.awaiting_response
    answered = [event async for event in dialogue.respond()]
    assert answered[-1].text == "Anything else?"
    assert "thanks" in script.prompts[-1]
