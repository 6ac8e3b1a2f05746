"""What may wait for a response is bounded; an input too big for the model is dropped, not kept."""

from __future__ import annotations

import json

import numpy as np

from tests.server.wire import events_until, next_event, open_session, pcm16_b64

MANUAL_16K = {
    "type": "session.update",
    "session": {
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}
    },
}


def _audio_item(seconds: float, event_id: str) -> str:
    pcm = np.zeros(round(seconds * 16000), dtype=np.int16)
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_audio", "audio": pcm16_b64(pcm)}],
    }
    return json.dumps({"type": "conversation.item.create", "event_id": event_id, "item": item})


def _text_item(text: str, event_id: str | None = None) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "event_id": event_id, "item": item})


async def _manual_session(server):
    ws = await open_session(server)
    await ws.send(json.dumps(MANUAL_16K))
    await next_event(ws, "session.updated")
    return ws


async def _respond(ws) -> dict:
    await ws.send(json.dumps({"type": "response.create"}))
    return (await events_until(ws, "response.done"))[-1]["response"]


async def test_audio_beyond_the_unanswered_limit_is_refused(start_server, script) -> None:
    """Once 10 s of audio wait for a response, the item that would exceed that is refused with
    its event_id; the items already accepted are all answered."""
    script.say("I heard two clips.")
    async with start_server(limits={"max_unanswered_audio_s": 10.0}) as server:
        ws = await _manual_session(server)
        for n in (1, 2):
            await ws.send(_audio_item(4.0, f"a{n}"))
            assert (await next_event(ws))["type"] == "conversation.item.created"
        await ws.send(_audio_item(4.0, "a3"))
        error = (await next_event(ws))["error"]
        assert (error["code"], error["event_id"]) == ("unanswered_input_full", "a3")
        assert "at most 10 s of audio" in error["message"]
        done = await _respond(ws)
        assert done["status"] == "completed" and done["metrics"]["audio_s"] == 8.0
        await ws.send(_audio_item(4.0, "a4"))  # answered input no longer counts
        assert (await next_event(ws))["type"] == "conversation.item.created"
        await ws.close()


async def test_a_refused_commit_keeps_the_buffered_audio(start_server, script) -> None:
    """A commit refused for the unanswered limit leaves the buffer as it was: committed after
    the response, it is all there."""
    script.say("First.")
    async with start_server(limits={"max_unanswered_audio_s": 10.0}) as server:
        ws = await _manual_session(server)
        await ws.send(_audio_item(8.0, "a1"))
        await next_event(ws, "conversation.item.created")
        pcm = np.zeros(4 * 16000, dtype=np.int16)
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(pcm)}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c1"}))
        error = (await next_event(ws))["error"]
        assert (error["code"], error["event_id"]) == ("unanswered_input_full", "c1")
        await _respond(ws)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        assert (await next_event(ws))["type"] == "input_audio_buffer.committed"
        script.say("Second.")
        assert (await _respond(ws))["metrics"]["audio_s"] == 4.0
        await ws.close()


async def test_text_beyond_the_unanswered_limit_is_refused(start_server) -> None:
    """Typed text is bounded the same way, in characters."""
    async with start_server(limits={"max_unanswered_text_chars": 100}) as server:
        ws = await open_session(server)
        await ws.send(_text_item("x" * 60, "t1"))
        assert (await next_event(ws))["type"] == "conversation.item.created"
        await ws.send(_text_item("y" * 60, "t2"))
        error = (await next_event(ws))["error"]
        assert (error["code"], error["event_id"]) == ("unanswered_input_full", "t2")
        assert "at most 100 characters" in error["message"]
        await ws.close()


async def test_an_input_too_big_for_the_model_does_not_break_the_session(
    server, script, scripted_worker, monkeypatch
) -> None:
    """A turn over the model's context fails with context_overflow and is taken out of the
    conversation: the next turn is answered with the first one still in its prompt."""
    worker, _ = scripted_worker
    monkeypatch.setattr(worker, "context_tokens", 4096)
    script.say("Noted, Bob.")
    script.say("Your name is Bob.")
    script.say("Hello.")
    ws = await open_session(server)
    await ws.send(_text_item("My name is Bob."))
    assert (await _respond(ws))["status"] == "completed"
    await ws.send(_text_item("word " * 5000))
    await ws.send(json.dumps({"type": "response.create"}))
    events = await events_until(ws, "response.done")
    (error,) = [e["error"] for e in events if e["type"] == "error"]
    assert error["code"] == "context_overflow" and "removed" in error["message"]
    assert events[-1]["response"]["status"] == "failed"
    for question in ("What is my name?", "Hello?"):
        await ws.send(_text_item(question))
        assert (await _respond(ws))["status"] == "completed"
    assert len(script.prompts) == 3  # turn 1, then both turns after the oversize one
    assert "My name is Bob." in script.prompts[1] and "word word" not in script.prompts[1]
    await ws.close()


async def test_a_refused_commit_keeps_the_utterance_with_server_vad(
    start_server, script, speech_16k
) -> None:
    """With server VAD, a manual commit of speech in progress refused for the unanswered limit
    keeps that utterance: committed after the response, it is answered."""
    script.say("First.")
    script.say("Second.")
    vad = {"type": "server_vad", "create_response": False}
    update = {
        "type": "session.update",
        "session": {
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": vad}
            }
        },
    }
    speech_s = len(speech_16k) / 16000
    async with start_server(limits={"max_unanswered_audio_s": 10.0}) as server:
        ws = await open_session(server)
        await ws.send(json.dumps(update))
        await next_event(ws, "session.updated")
        await ws.send(_audio_item(10.0 - speech_s / 2, "a1"))
        await next_event(ws, "conversation.item.created")
        audio = pcm16_b64(speech_16k)
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c1"}))
        error = (await next_event(ws, "error"))["error"]
        assert (error["code"], error["event_id"]) == ("unanswered_input_full", "c1")
        await _respond(ws)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c2"}))
        committed = await next_event(ws)
        assert committed["type"] == "input_audio_buffer.committed", committed
        done = await _respond(ws)
        await ws.close()
    assert done["status"] == "completed"
    assert abs(done["metrics"]["audio_s"] - speech_s) < 0.6
