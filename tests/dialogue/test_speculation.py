"""Preemptive turns on the tiny model: a speculation is adopted on commit, or leaves no trace."""

from __future__ import annotations

import asyncio

import numpy as np

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import TextDelta, ToolStarted, TurnDone
from assistant.testing.forced import reply_tokens
from assistant.tools import ToolRegistry, tool
from tests.dialogue.house import turn

LIGHT_CALL = {"name": "switch_light", "arguments": {"room": "kitchen"}}


def _recording_tools(calls: list[str]) -> ToolRegistry:
    @tool
    def switch_light(room: str) -> str:
        """Switch a room's light (the test's recording tool)."""
        calls.append(room)
        return f"{room} light switched"

    return ToolRegistry.from_functions([switch_light])


async def _model_idle(worker) -> None:
    assert await asyncio.to_thread(worker.wait_idle, 60)


async def test_a_committed_utterance_adopts_its_speculation(scripted, speech) -> None:
    """Speculate, then commit the same samples: one chat request, the turn marked preempted."""
    worker, script = scripted
    script.say("The light is on.")
    dialogue = Dialogue(worker)
    audio = speech("turn on the light")
    jobs_before = worker.engine.stats.speculative_jobs
    assert dialogue.speculate(audio)
    dialogue.add_user_turn(audio=audio.copy())
    events = await turn(dialogue)
    await dialogue.drain()
    done = events[-1]
    assert isinstance(done, TurnDone) and done.text == "The light is on."
    assert done.metrics.preempted
    assert script.served.count("chat") == 1
    assert worker.engine.stats.speculative_jobs == jobs_before + 1
    assert dialogue.speculations.adopted == 1


async def test_a_discarded_speculation_leaves_no_trace(scripted, speech) -> None:
    """A finished speculation with a tool call, then discarded: no tool ran, no history, and
    the scripted reply is still the next one (it goes to the real turn)."""
    worker, script = scripted
    script.say("Switching.", [LIGHT_CALL])
    script.say("Done.")
    calls: list[str] = []
    dialogue = Dialogue(worker, _recording_tools(calls))
    assert dialogue.speculate(speech("turn on the light"))
    await _model_idle(worker)  # the speculative generation has written its tool call
    assert dialogue.discard_speculation()
    await asyncio.sleep(0.1)
    assert calls == [] and dialogue.history == [] and script.served == []
    dialogue.add_user_turn(text="turn on the kitchen light")
    events = await turn(dialogue)
    assert calls == ["kitchen"]
    assert [e.call.name for e in events if isinstance(e, ToolStarted)] == ["switch_light"]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Switching.Done."
    assert not events[-1].metrics.preempted


async def test_a_longer_utterance_starts_over(scripted, speech) -> None:
    """The user spoke on: the committed clip differs from the speculated one, so the
    speculation is discarded and the reply is asked for again, for the whole clip."""
    worker, script = scripted
    script.say("Which room?")
    dialogue = Dialogue(worker)
    first = speech("turn on")
    assert dialogue.speculate(first)
    whole = np.concatenate([first, np.zeros(4000, dtype=np.int16), speech("the light")])
    dialogue.add_user_turn(audio=whole)
    events = await turn(dialogue)
    await dialogue.drain()
    assert events[-1].text == "Which room?" and not events[-1].metrics.preempted
    assert (dialogue.speculations.adopted, dialogue.speculations.discarded) == (0, 1)
    assert script.served.count("chat") == 1


async def test_preemptive_off_speculates_nothing(scripted, speech) -> None:
    """With dialogue.preemptive off, speculate starts nothing and the model is not asked."""
    worker, script = scripted
    dialogue = Dialogue(worker, settings=DialogueSettings(preemptive=False))
    assert not dialogue.speculate(speech("turn on the light"))
    await _model_idle(worker)
    assert dialogue.speculations.started == 0 and script.served == []


async def test_no_speculation_while_a_response_runs(scripted, speech) -> None:
    """Speech heard during a reply is not answered ahead: it waits for that reply."""
    worker, script = scripted
    tokens = reply_tokens(script.tokenizer, "A long answer.", [])
    gate = script.held_reply(tokens, after_tokens=2)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="Tell me something")
    events = dialogue.respond()
    try:
        first = await anext(events)  # the model is held mid-reply
        assert isinstance(first, TextDelta) and dialogue.is_responding
        assert not dialogue.speculate(speech("turn on the light"))
    finally:
        gate.set()
    rest = [event async for event in events]
    assert isinstance(rest[-1], TurnDone) and rest[-1].text == "A long answer."
    assert dialogue.speculations.started == 0


async def test_a_speculation_acts_once_its_tool_call_has_begun(scripted, speech) -> None:
    """speculation_acts_on (the eager end of turn's sign) turns on at [TOOL_CALLS], while the
    call's arguments are still being written (the call itself is known only at its end), and
    only for the speech the speculation was started for; the adopted turn runs the whole call."""
    worker, script = scripted
    tokens = reply_tokens(worker.tokenizer, "Switching.", [LIGHT_CALL])
    tool_calls_id = worker.tokenizer.instruct_tokenizer.tokenizer.get_special_token("[TOOL_CALLS]")
    held = script.held_reply(tokens, after_tokens=tokens.index(tool_calls_id) + 2)
    calls: list[str] = []
    dialogue = Dialogue(worker, _recording_tools(calls))
    audio = speech("turn on the light")
    assert not dialogue.speculation_acts_on(audio)
    assert dialogue.speculate(audio)
    for _ in range(400):
        if dialogue.speculation_acts_on(audio):
            break
        await asyncio.sleep(0.05)
    assert dialogue.speculation_acts_on(audio) and calls == []  # begun, held in its arguments
    assert not dialogue.speculation_acts_on(audio.copy())  # other speech, if the same samples
    assert not dialogue.speculation_acts_on(None)
    held.set()
    dialogue.add_user_turn(audio=audio.copy())
    events = await turn(dialogue)
    await dialogue.drain()
    assert calls == ["kitchen"] and events[-1].metrics.preempted
