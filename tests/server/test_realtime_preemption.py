"""Preemptive turns over /v1/realtime with server VAD, on real espeak-ng speech."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from assistant.config import DialogueSettings
from tests.server.wire import events_until, next_event, open_session, pcm16_b64


def _server_vad() -> str:
    audio_input = {
        "format": {"type": "audio/pcm", "rate": 16000},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
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
    audio = np.concatenate([speech_16k, _silence(250), speech_16k])
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
