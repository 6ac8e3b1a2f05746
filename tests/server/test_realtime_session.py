"""Conversation behaviour over /v1/realtime: commits, barge-in, transcripts, shutdown."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from assistant.config import GenerationParams, VadSettings
from assistant.conversation.dialogue import Dialogue
from assistant.events import Announcement
from assistant.server.realtime.protocol import ProtocolError, parse_client_event
from assistant.server.realtime.session import RealtimeSession
from tests.server.wire import events_until, next_event, open_session, pcm16_b64, ws_url

LONG_REPLY = "la " * 400


def _session(turn_detection: dict | None, **extra) -> str:
    audio_input = {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": turn_detection}
    audio_input.update(extra)
    return json.dumps(
        {"type": "session.update", "session": {"type": "realtime", "audio": {"input": audio_input}}}
    )


def _text_item(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


def _append(pcm: np.ndarray) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(pcm)})


async def test_manual_commit_then_response(server, script, speech_16k) -> None:
    """turn_detection null: append, commit, response.create → the reply to the audio."""
    script.say("I heard you.")
    ws = await open_session(server)
    await ws.send(_session(None))
    await next_event(ws, "session.updated")
    await ws.send(_append(speech_16k))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    committed = await next_event(ws)
    created = await next_event(ws)
    assert committed["type"] == "input_audio_buffer.committed"
    assert created["type"] == "conversation.item.created"
    assert created["item"]["id"] == committed["item_id"]
    assert created["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    await ws.send(json.dumps({"type": "response.create"}))
    events = await events_until(ws, "response.done")
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == (
        "I heard you."
    )
    assert events[-1]["response"]["metrics"]["audio_s"] > 1.0
    await ws.close()


async def test_transcript_arrives_for_the_committed_item(server, script, speech_16k) -> None:
    """With transcription on, the committed item gets its transcript event."""
    script.hear("What is the weather in Paris today?")
    script.say("Sunny.")
    ws = await open_session(server)
    await ws.send(_session(None, transcription={"model": "voxtral"}))
    await next_event(ws, "session.updated")
    await ws.send(_append(speech_16k))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    item_id = (await next_event(ws, "input_audio_buffer.committed"))["item_id"]
    await ws.send(json.dumps({"type": "response.create"}))
    events = await events_until(ws, "response.done")
    transcript = next(
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert (transcript["item_id"], transcript["transcript"]) == (
        item_id,
        "What is the weather in Paris today?",
    )
    await ws.close()


async def test_transcripts_are_made_in_the_session_language(server, script, speech_16k) -> None:
    """audio.input.transcription.language reaches transcription mode (``lang:xx``); a code
    that is not ISO 639-1 is refused with the field named, and the session keeps its state."""
    ws = await open_session(server)
    await ws.send(_session(None, transcription={"model": "voxtral", "language": "Klingon"}))
    error = await next_event(ws, "error")
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["param"] == "session.audio.input.transcription.language"
    assert "ISO 639-1" in error["error"]["message"]
    await ws.send(_session(None, transcription={"model": "voxtral", "language": "FR"}))
    updated = await next_event(ws, "session.updated")
    assert updated["session"]["audio"]["input"]["transcription"]["language"] == "fr"
    script.hear("Quel temps fait-il ?")
    script.say("Beau.")
    await ws.send(_append(speech_16k))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    await ws.send(json.dumps({"type": "response.create"}))
    events = await events_until(ws, "response.done")
    assert any(
        e["type"] == "conversation.item.input_audio_transcription.completed"
        and e["transcript"] == "Quel temps fait-il ?"
        for e in events
    )
    (prompt,) = script.transcription_prompts
    assert "lang:fr[TRANSCRIBE]" in prompt
    await ws.close()


async def test_speech_during_a_reply_interrupts_it(server, script, speech_16k) -> None:
    """Server VAD barge-in: new speech cancels the reply (turn_detected), then it is answered."""
    script.say(LONG_REPLY)
    script.say("Yes?")
    ws = await open_session(server)
    await ws.send(_session({"type": "server_vad"}))
    await next_event(ws, "session.updated")
    await ws.send(_text_item("Sing me a song."))
    await ws.send(json.dumps({"type": "response.create"}))
    await next_event(ws, "response.output_text.delta")
    silence = np.zeros(16000, dtype=np.int16)
    await ws.send(_append(np.concatenate([speech_16k, silence])))
    first = await events_until(ws, "response.done")
    assert "input_audio_buffer.speech_started" in [e["type"] for e in first]
    assert first[-1]["response"]["status"] == "cancelled"
    assert first[-1]["response"]["status_details"]["reason"] == "turn_detected"
    second = await events_until(ws, "response.done")
    # All the audio arrives at once: the utterance may be committed while the cancelled reply
    # is still winding down, before its response.done.
    kinds = [e["type"] for e in first + second]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index(
        "input_audio_buffer.committed"
    )
    assert second[0]["type"] == "response.created"
    assert next(e for e in second if e["type"] == "response.output_text.done")["text"] == "Yes?"
    assert second[-1]["response"]["status"] == "completed"
    await ws.close()


async def test_second_response_while_one_runs_is_refused(server, script) -> None:
    """response.create during a response gets conversation_already_has_active_response."""
    script.say(LONG_REPLY)
    ws = await open_session(server)
    await ws.send(_text_item("Sing."))
    await ws.send(json.dumps({"type": "response.create"}))
    await next_event(ws, "response.output_text.delta")
    await ws.send(json.dumps({"type": "response.create", "event_id": "again"}))
    error = await next_event(ws, "error")
    assert (error["error"]["code"], error["error"]["event_id"]) == (
        "conversation_already_has_active_response",
        "again",
    )
    await ws.send(json.dumps({"type": "response.cancel"}))
    assert (await next_event(ws, "response.done"))["response"]["status"] == "cancelled"
    await ws.close()


async def test_response_with_nothing_to_answer_is_refused(server) -> None:
    """response.create before any input gets no_user_input and starts nothing."""
    ws = await open_session(server)
    await ws.send(json.dumps({"type": "response.create", "event_id": "r0"}))
    error = await next_event(ws)
    assert (error["type"], error["error"]["code"]) == ("error", "no_user_input")
    await ws.close()


async def test_cancel_without_a_response_is_an_error(server) -> None:
    """response.cancel with nothing running gets response_cancel_not_active."""
    ws = await open_session(server)
    await ws.send(json.dumps({"type": "response.cancel"}))
    assert (await next_event(ws))["error"]["code"] == "response_cancel_not_active"
    await ws.close()


async def test_client_tool_names_must_not_clash_with_server_tools(server) -> None:
    """Declaring a client tool named like a server tool is refused; the session is unchanged."""
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    ws = await open_session(server)
    await ws.send(json.dumps({"type": "session.update", "session": {"tools": [tool]}}))
    error = await next_event(ws)
    assert (error["error"]["code"], error["error"]["param"]) == ("invalid_value", "session.tools")
    await ws.close()


async def test_shutdown_ends_the_running_response_before_closing(start_server, script) -> None:
    """On shutdown a running response still gets its response.done, then the close is 1001."""
    script.say(LONG_REPLY)
    async with start_server(limits={"shutdown_grace_s": 0.1}) as server:
        ws = await open_session(server)
        await ws.send(_text_item("Sing."))
        await ws.send(json.dumps({"type": "response.create"}))
        await next_event(ws, "response.output_text.delta")
        shutdown = asyncio.create_task(server.shutdown())
        done = await next_event(ws, "response.done")
        await shutdown
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert done["response"]["status"] in ("completed", "cancelled")
    assert ws.close_code == 1001


async def test_tool_announcements_reach_open_sessions(server) -> None:
    """An announcement for no conversation in particular reaches every open session."""
    first, second = await open_session(server), await open_session(server)
    assert server.tools is not None
    server.tools.announcements.put_nowait(Announcement("The house is locked.", "plugin"))
    for ws in (first, second):
        created = await next_event(ws, "conversation.item.created")
        assert created["item"]["role"] == "assistant"
        assert created["item"]["status"] == "completed"
        text = [{"type": "output_text", "text": "The house is locked."}]
        assert created["item"]["content"] == text
        await ws.close()


async def test_an_announcement_without_text_does_not_silence_later_ones(server) -> None:
    """An announcement the dialogue refuses (blank text) is dropped; the next one arrives."""
    ws = await open_session(server)
    assert server.tools is not None
    server.tools.announcements.put_nowait(Announcement("   ", "plugin"))
    server.tools.announcements.put_nowait(Announcement("The house is locked.", "plugin"))
    async with asyncio.timeout(5):
        created = await next_event(ws, "conversation.item.created")
    assert created["item"]["content"] == [{"type": "output_text", "text": "The house is locked."}]
    await ws.close()


async def test_a_timer_announces_only_to_the_session_that_set_it(server, script) -> None:
    """A conversation's announcement goes to its own session and into its model prompts only."""
    alice, bob = await connect(ws_url(server)), await open_session(server)
    alice_id = (await next_event(alice, "session.created"))["session"]["id"]
    script.say("A tea timer of three minutes is running.")  # Alice set it earlier
    await alice.send(_text_item("Set a tea timer."))
    await alice.send(json.dumps({"type": "response.create"}))
    await next_event(alice, "response.done")
    assert server.tools is not None
    server.tools.announcements.put_nowait(
        Announcement("Your tea timer is done.", "set_timer", conversation_id=alice_id)
    )
    created = await next_event(alice, "conversation.item.created")
    assert created["item"]["content"][0]["text"] == "Your tea timer is done."
    script.say("Your tea is ready.")
    script.say("Nothing new.")
    for ws, question in ((alice, "What was that?"), (bob, "Anything new?")):
        await ws.send(_text_item(question))
        await ws.send(json.dumps({"type": "response.create"}))
        created = await next_event(ws, "conversation.item.created")
        assert created["item"]["role"] == "user"  # Bob got no announcement before his input
        await next_event(ws, "response.done")
    alice_prompt, bob_prompt = script.prompts[1:]
    assert "Your tea timer is done." in alice_prompt  # Alice can ask what it was
    assert "Your tea timer is done." not in bob_prompt
    await alice.close()
    await bob.close()


async def test_speech_committed_during_a_reply_is_answered_after_it(
    server, script, speech_16k
) -> None:
    """Without barge-in, an utterance committed during a reply gets its own response after it."""
    script.say(LONG_REPLY)
    script.say("Yes?")
    ws = await open_session(server)
    await ws.send(_session({"type": "server_vad", "interrupt_response": False}))
    await next_event(ws, "session.updated")
    await ws.send(_text_item("Sing me a song."))
    await ws.send(json.dumps({"type": "response.create"}))
    await next_event(ws, "response.output_text.delta")
    await ws.send(_append(np.concatenate([speech_16k, np.zeros(16000, dtype=np.int16)])))
    first = await events_until(ws, "response.done")
    assert "input_audio_buffer.committed" in [e["type"] for e in first]
    assert first[-1]["response"]["status"] != "cancelled"
    second = await events_until(ws, "response.done")
    assert second[0]["type"] == "response.created"
    assert next(e for e in second if e["type"] == "response.output_text.done")["text"] == "Yes?"
    await ws.close()


async def test_unsetting_max_output_tokens_restores_the_server_limit(scripted_worker) -> None:
    """max_output_tokens "inf" after a client limit goes back to the server's own limit."""
    worker, _ = scripted_worker
    dialogue = Dialogue(worker, params=GenerationParams(max_new_tokens=77))
    session = RealtimeSession(dialogue, [].append, model_name="voxtral")
    for limit, expected in ((5, 5), ("inf", 77)):
        update = {"type": "session.update", "session": {"max_output_tokens": limit}}
        await session.handle(parse_client_event(json.dumps(update)))
        assert dialogue.params.max_new_tokens == expected
    await session.close()


async def test_a_closed_session_refuses_new_events(scripted_worker) -> None:
    """After close() (server shutdown) a client event is refused and starts no response."""
    worker, _ = scripted_worker
    sent: list[dict] = []
    session = RealtimeSession(Dialogue(worker), sent.append, model_name="voxtral")
    await session.close()
    with pytest.raises(ProtocolError) as refused:
        await session.handle(parse_client_event(_text_item("Are you there?")))
    assert refused.value.code == "session_closed"
    assert not session.responding
    assert [e["type"] for e in sent] == []


async def test_silero_vad_finds_the_utterance_and_answers_it(
    start_server, script, speech_16k
) -> None:
    """With the Silero VAD backend (run off the event loop) speech is committed and answered."""
    script.say("Heard you.")
    async with start_server(vad_settings=VadSettings(backend="silero")) as server:
        ws = await open_session(server)
        await ws.send(_session({"type": "server_vad"}))
        await next_event(ws, "session.updated")
        await ws.send(_append(np.concatenate([speech_16k, np.zeros(16000, dtype=np.int16)])))
        events = await events_until(ws, "response.done")
        await ws.close()
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "response.done",
    ]
    assert [e["type"] for e in events if e["type"] in order] == order
    assert events[-1]["response"]["status"] == "completed"
