"""End to end on the tiny model: user turns, replies, transcripts, metrics, instructions."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    AudioChunk,
    TextChunk,
    UserMessage,
)

from assistant.audio.io import AudioError
from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import ErrorEvent, TextDelta, TurnDone, UserTranscript
from tests.dialogue.house import turn


async def test_text_turn_streams_the_reply_and_ends_with_turn_done(scripted) -> None:
    """A typed turn yields the scripted reply as text deltas, then TurnDone with the text."""
    worker, script = scripted
    script.say("The kitchen light is on.")
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="Is the kitchen light on?")
    events = await turn(dialogue)
    assert isinstance(events[-1], TurnDone)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The kitchen light is on."
    assert events[-1].text == "The kitchen light is on."
    assert events[-1].finish_reason == "stop"


async def test_reply_joins_the_history(scripted) -> None:
    """After a turn the history holds the user message and the assistant's reply."""
    worker, script = scripted
    script.say("Hello there.")
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="Hi")
    await turn(dialogue)
    user, reply = dialogue.history
    assert isinstance(user, UserMessage) and isinstance(reply, AssistantMessage)
    assert reply.content == "Hello there."


async def test_consecutive_user_turns_merge_into_one_message(scripted, speech) -> None:
    """Two inputs before a reply become one user message with both contents, in order."""
    worker, _ = scripted
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(audio=speech("turn on the light"))
    dialogue.add_user_turn(text="the kitchen one")
    (user,) = dialogue.history
    assert [type(c) for c in user.content] == [AudioChunk, TextChunk]


async def test_audio_turn_transcript_reaches_on_transcript(scripted, speech) -> None:
    """The clip's transcript arrives on its own channel with the item's id, not in the reply."""
    worker, script = scripted
    script.say("It is noon.")
    script.hear("What time is it?")
    dialogue = Dialogue(worker)
    heard: list[object] = []
    dialogue.on_transcript = heard.append
    item_id = dialogue.add_user_turn(audio=speech("what time is it"))
    events = await turn(dialogue)
    await dialogue.drain()
    assert heard == [UserTranscript(item_id, "What time is it?", None)]
    assert not any(isinstance(e, UserTranscript) for e in events)


async def test_turn_done_does_not_wait_for_the_transcript(scripted, speech) -> None:
    """TurnDone comes while the clip's transcription is still held; the transcript follows."""
    worker, script = scripted
    script.say("It is noon.")
    gate = script.held_transcript("What time is it?", after_tokens=2)
    dialogue = Dialogue(worker)
    heard: list[object] = []
    dialogue.on_transcript = heard.append
    item_id = dialogue.add_user_turn(audio=speech("what time is it"))
    try:
        events = await asyncio.wait_for(turn(dialogue), timeout=20)
        assert events[-1].text == "It is noon." and heard == []
    finally:
        gate.set()
    await dialogue.drain()
    assert heard == [UserTranscript(item_id, "What time is it?", None)]


async def test_the_reply_is_generated_before_any_transcription(scripted, speech) -> None:
    """The model thread takes the reply's generation first, the clips' transcriptions after."""
    worker, script = scripted
    script.say("It is noon.")
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(audio=speech("what time"))
    dialogue.add_user_turn(audio=speech("is it"))
    await turn(dialogue)
    await dialogue.drain()
    assert script.served == ["chat", "transcription", "transcription"]


async def test_transcripts_can_be_turned_off(scripted, speech) -> None:
    """With transcribe_user off no transcription request reaches the model."""
    worker, script = scripted
    dialogue = Dialogue(worker, settings=DialogueSettings(transcribe_user=False))
    heard: list[object] = []
    dialogue.on_transcript = heard.append
    dialogue.add_user_turn(audio=speech("what time is it"))
    await turn(dialogue)
    await dialogue.drain()
    assert heard == []
    assert script.served.count("transcription") == 0


async def test_turn_metrics_are_measured_from_the_end_of_speech(scripted, speech) -> None:
    """TurnDone carries latencies from speech end, token counts and the audio length."""
    worker, script = scripted
    script.say("Done.")
    clip = speech("turn on the light")
    dialogue = Dialogue(worker, settings=DialogueSettings(transcribe_user=False))
    dialogue.add_user_turn(audio=clip, speech_end_s=time.monotonic() - 0.25)
    done = (await turn(dialogue))[-1]
    m = done.metrics
    assert m.speech_end_to_commit_ms is not None and m.speech_end_to_commit_ms >= 250
    assert m.speech_end_to_commit_ms <= m.speech_end_to_first_delta_ms <= m.speech_end_to_done_ms
    assert m.speech_end_to_first_tool_ms is None
    assert m.audio_s == pytest.approx(len(clip) / 16000, abs=0.001)
    assert m.model_calls == 1 and m.prompt_tokens > 375 and m.generated_tokens > 0


async def test_turn_metrics_are_logged(scripted, caplog) -> None:
    """Each finished turn leaves one log line with its latencies and token counts."""
    worker, _ = scripted
    dialogue = Dialogue(worker, conversation_id="conv_logged")
    dialogue.add_user_turn(text="hi")
    with caplog.at_level(logging.INFO, logger="assistant.conversation.dialogue"):
        await turn(dialogue)
    (line,) = [r.getMessage() for r in caplog.records if "conv_logged turn 1" in r.getMessage()]
    assert "stop: first text" in line and "1 model call(s)" in line


async def test_typed_turn_has_no_commit_latency(scripted) -> None:
    """A typed turn has no speech end: its latencies count from the moment it was added."""
    worker, _ = scripted
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="hi")
    m = (await turn(dialogue))[-1].metrics
    assert m.speech_end_to_commit_ms is None
    assert m.speech_end_to_done_ms is not None and m.speech_end_to_done_ms > 0


async def test_bad_audio_raises_and_adds_nothing(scripted) -> None:
    """Unreadable audio is refused with AudioError and the history is unchanged."""
    worker, _ = scripted
    dialogue = Dialogue(worker)
    with pytest.raises(AudioError):
        dialogue.add_user_turn(audio=np.array([], dtype=np.int16))
    assert dialogue.history == []


async def test_respond_without_input_is_refused(scripted) -> None:
    """Asking for a response before any user turn is an error, not an empty turn."""
    worker, _ = scripted
    with pytest.raises(RuntimeError, match="add a user turn"):
        await turn(Dialogue(worker))


async def test_instructions_ride_in_the_first_user_message_below_v13(scripted, speech) -> None:
    """On v7 the instructions are text at the start of the first [INST], before the audio."""
    worker, script = scripted
    dialogue = Dialogue(worker, settings=DialogueSettings(instructions="Answer in one word."))
    dialogue.add_user_turn(audio=speech("hello"))
    await turn(dialogue)
    dialogue.add_user_turn(text="and again")
    await turn(dialogue)
    prompt = script.prompts[-1]
    assert "[SYSTEM_PROMPT]" not in prompt
    assert prompt.count("Answer in one word.") == 1
    assert prompt.index("[INST]Answer in one word.") < prompt.index("[BEGIN_AUDIO]")


async def test_instructions_are_a_system_prompt_from_v13(scripted_workers, speech) -> None:
    """On v13 the instructions travel as a system prompt next to audio."""
    worker, script = scripted_workers("v13")
    dialogue = Dialogue(worker, settings=DialogueSettings(instructions="Answer in one word."))
    dialogue.add_user_turn(audio=speech("hello"))
    await turn(dialogue)
    assert "[SYSTEM_PROMPT]Answer in one word.[/SYSTEM_PROMPT]" in script.prompts[-1]


async def test_set_instructions_applies_to_the_next_request(scripted) -> None:
    """Instructions changed between turns reach the next prompt."""
    worker, script = scripted
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="hi")
    await turn(dialogue)
    dialogue.set_instructions("Speak like a pirate.")
    dialogue.add_user_turn(text="hello")
    await turn(dialogue)
    assert "Speak like a pirate." not in script.prompts[0]
    assert "Speak like a pirate." in script.prompts[1]


async def test_input_over_the_budget_ends_with_context_overflow(scripted) -> None:
    """A newest turn that alone exceeds the budget fails clearly and leaves the history (a
    later turn would join it, and fail too)."""
    worker, _ = scripted
    dialogue = Dialogue(worker, settings=DialogueSettings(context_budget_tokens=5))
    dialogue.add_user_turn(text="a question that does not fit in five tokens")
    events = await turn(dialogue)
    assert [e.code for e in events if isinstance(e, ErrorEvent)] == ["context_overflow"]
    assert events[-1].finish_reason == "error"
    assert dialogue.history == []
