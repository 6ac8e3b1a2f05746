"""Preemptive turns over /v1/realtime with server VAD, on real espeak-ng speech."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import numpy as np

from assistant.config import DialogueSettings, VadSettings
from assistant.testing.speech import sounding
from tests.server.wire import events_until, next_event, open_session, pcm16_b64


def _server_vad(turn_detection: dict[str, Any] | None = None) -> str:
    audio_input = {
        "format": {"type": "audio/pcm", "rate": 16000},
        "turn_detection": turn_detection or {"type": "server_vad", "silence_duration_ms": 500},
    }
    session = {"type": "realtime", "audio": {"input": audio_input}}
    return json.dumps({"type": "session.update", "session": session})


def _append(pcm: np.ndarray) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(pcm)})


def _silence(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, dtype=np.int16)


async def _spoken_turn(server: Any, audio: np.ndarray) -> list[dict[str, Any]]:
    """Send ``audio`` then a second of silence; every event until the reply's response.done."""
    ws = await open_session(server)
    await ws.send(_server_vad())
    await next_event(ws, "session.updated")
    await ws.send(_append(np.concatenate([_silence(300), audio, _silence(1000)])))
    events = await events_until(ws, "response.done")
    await ws.close()
    return events


def _before_commit(events: list[dict[str, Any]]) -> list[str]:
    kinds = [e["type"] for e in events]
    return [k for k in kinds[: kinds.index("input_audio_buffer.committed")] if "response" in k]


async def test_a_committed_utterance_is_answered_by_its_speculation(
    server, script, speech_16k
) -> None:
    """The reply was asked for at the first silent frame and adopted: nothing of it before
    the commit, the turn marked preempted."""
    script.say("Sunny.")
    events = await _spoken_turn(server, speech_16k)
    assert _before_commit(events) == []
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["metrics"]["preempted"]
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == "Sunny."


async def test_a_pause_shorter_than_the_hangover_discards_the_speculation(
    server, script, speech_16k
) -> None:
    """Speech, 250 ms of silence, more speech: one utterance, one response, the scripted reply
    (the speculation of the first half left nothing behind)."""
    script.say("Sunny.")
    script.say("Unused.")
    # espeak-ng ends its speech with 350 ms of silence: cut it, or the pause would be 600 ms.
    voiced = sounding(speech_16k)
    audio = np.concatenate([voiced, _silence(250), voiced])
    events = await _spoken_turn(server, audio)
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.committed") == 1
    assert kinds.count("response.created") == 1
    assert _before_commit(events) == []
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == "Sunny."
    assert script.served.count("chat") == 1


async def test_preemptive_off_answers_after_the_hangover(start_server, script, speech_16k) -> None:
    """With dialogue.preemptive off the same turn is answered, not marked preempted."""
    script.say("Sunny.")
    async with start_server(dialogue_settings=DialogueSettings(preemptive=False)) as server:
        events = await _spoken_turn(server, speech_16k)
    done = events[-1]["response"]
    assert done["status"] == "completed" and not done["metrics"]["preempted"]


async def _silence_until_stopped(
    server: Any, audio: np.ndarray, turn_detection: dict[str, Any] | None = None
) -> tuple[int, list[dict]]:
    """Send ``audio``, then 20 ms of silence at a time, slowly (400 ms apart: time for the
    speculation to finish), until ``speech_stopped``; return how much audio had been sent after
    the end of speech by then (ms), and every event until the reply's ``response.done``."""
    ws = await open_session(server)
    await ws.send(_server_vad(turn_detection))
    await next_event(ws, "session.updated")
    sent = np.concatenate([_silence(300), audio])
    await ws.send(_append(sent))
    sent_ms = len(sent) // 16
    events: list[dict[str, Any]] = []
    stopped: list[dict[str, Any]] = []
    while not stopped:
        assert sent_ms < 300 + len(audio) // 16 + 2000, [e["type"] for e in events]
        await ws.send(_append(_silence(20)))
        sent_ms += 20
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.4):
                while True:
                    events.append(json.loads(await ws.recv()))
        stopped = [e for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    after_speech_ms = sent_ms - stopped[0]["audio_end_ms"]
    await ws.send(_append(_silence(1000)))
    if not any(e["type"] == "response.done" for e in events):
        events += await events_until(ws, "response.done")
    await ws.close()
    return after_speech_ms, events


async def test_an_eager_end_of_turn_commits_a_complete_command_before_the_hangover(
    start_server, script, speech_16k
) -> None:
    """With vad.eager_silence_ms, a speculation that ends with a tool call ends the turn after
    that much silence, not the 500 ms hangover; the turn then runs as usual."""
    script.say("Let me see.", [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say("Sunny.")
    vad = VadSettings(eager_silence_ms=100)
    async with start_server(vad_settings=vad) as server:
        after_speech_ms, events = await _silence_until_stopped(server, speech_16k)
    assert after_speech_ms < 500  # the hangover (500 ms) never ran out
    assert _before_commit(events) == []
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.committed") == 1
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["metrics"]["preempted"]
    outputs = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [o["name"] for o in outputs if o["type"] == "function_call"] == ["get_weather"]


async def test_without_a_tool_call_the_turn_waits_for_the_whole_hangover(
    start_server, script, speech_16k
) -> None:
    """A speculation that only talks is no sign that the user has finished: the eager end
    waits for silence_duration_ms as always."""
    script.say("Sunny.")
    async with start_server(vad_settings=VadSettings(eager_silence_ms=100)) as server:
        after_speech_ms, events = await _silence_until_stopped(server, speech_16k)
    assert after_speech_ms >= 500
    assert events[-1]["response"]["status"] == "completed"


async def test_a_client_asking_for_semantic_vad_gets_the_eager_end(
    server, script, speech_16k
) -> None:
    """OpenAI's semantic_vad (eagerness high) turns the eager end on for that session, on a
    server whose own setting leaves it off."""
    script.say("Let me see.", [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say("Sunny.")
    semantic = {"type": "semantic_vad", "eagerness": "high"}
    after_speech_ms, events = await _silence_until_stopped(server, speech_16k, semantic)
    assert after_speech_ms < 500
    assert events[-1]["response"]["status"] == "completed"
