"""Spoken replies beside other sessions and under interruption: synthesis never holds up
another session, a barge-in stops the audio at once, and the history keeps what was heard."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from assistant.config import SpeechSettings
from assistant.speech.synthesis import EspeakSynthesizer, register_engine
from tests.server.wire import events_until, next_event, open_session, pcm16_b64

LONG_REPLY = " ".join(f"Here is sentence number {n} of my answer." for n in range(1, 41))

pytestmark = pytest.mark.timeout(180)


@dataclass
class Gated:
    """A speech engine whose voice "slow" blocks in synthesis while ``armed`` until ``release``;
    every voice speaks through espeak-ng."""

    armed: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    blocked: threading.Event = field(default_factory=threading.Event)
    name: str = field(default_factory=lambda: f"gated-{uuid.uuid4().hex[:8]}")

    def engine(self, voice: str, words_per_minute: int) -> Any:
        espeak = EspeakSynthesizer("en-us" if voice == "slow" else voice, words_per_minute)
        gated = self

        class Synth:
            sample_rate_hz = espeak.sample_rate_hz

            def synthesize(self, text: str) -> np.ndarray:
                if voice == "slow" and gated.armed.is_set():
                    gated.blocked.set()
                    gated.release.wait(60)
                pcm = espeak.synthesize(text)
                self.sample_rate_hz = espeak.sample_rate_hz
                return pcm

        return Synth()


@pytest.fixture
def gated() -> Iterator[Gated]:
    """The gated engine, registered under a fresh name, released after the test."""
    engine = Gated()
    register_engine(engine.name, engine.engine)
    yield engine
    engine.release.set()


def _speak(voice: str | None = None, audio_input: dict[str, Any] | None = None) -> str:
    audio: dict[str, Any] = {"output": {"voice": voice} if voice else {}}
    if audio_input is not None:
        audio["input"] = audio_input
    body = {"type": "realtime", "output_modalities": ["audio"], "audio": audio}
    return json.dumps({"type": "session.update", "session": body})


def _user_text(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


async def _stream(ws, pcm_24k: np.ndarray, chunk: int = 2400) -> None:
    """Send audio as fast as the socket takes it (server VAD segments it by its content)."""
    for start in range(0, len(pcm_24k), chunk):
        audio = pcm16_b64(pcm_24k[start : start + chunk])
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))


async def test_a_blocked_synthesis_holds_up_no_other_session(
    start_server, script, speech_24k, gated
) -> None:
    """While one session's synthesis is stuck, another session streams speech and gets its VAD
    events, a spoken reply with audio and its response.done; the stuck one then finishes."""
    script.say("I speak slowly.")
    script.say("It is 21 degrees in Paris.")
    async with start_server(speech_settings=SpeechSettings(engine=gated.name)) as server:
        slow = await open_session(server)
        await slow.send(_speak("slow"))
        await next_event(slow, "session.updated")
        gated.armed.set()
        await slow.send(_user_text("Say something."))
        await slow.send(json.dumps({"type": "response.create"}))
        await next_event(slow, "response.created")
        assert await asyncio.to_thread(gated.blocked.wait, 30)

        fast = await open_session(server)
        await fast.send(_speak())
        await next_event(fast, "session.updated")
        await _stream(fast, np.concatenate([speech_24k, np.zeros(24000 * 2, dtype=np.int16)]))
        events = await events_until(fast, "response.done")

        assert not gated.release.is_set()  # everything above happened while it was stuck
        gated.release.set()
        slow_events = await events_until(slow, "response.done")
        await slow.close()
        await fast.close()

    kinds = [e["type"] for e in events]
    for kind in ("speech_started", "speech_stopped", "committed"):
        assert f"input_audio_buffer.{kind}" in kinds
    assert events[-1]["response"]["status"] == "completed"
    assert sum(k == "response.output_audio.delta" for k in kinds) > 0
    assert slow_events[-1]["response"]["status"] == "completed"
    assert any(e["type"] == "response.output_audio.delta" for e in slow_events)


async def test_a_barge_in_stops_the_audio_and_the_history_keeps_what_was_sent(
    start_server, script, speech_24k
) -> None:
    """User speech during a long spoken reply cancels it (turn_detected): no audio follows the
    speech_started event, and the next prompt holds the sentences sent, not the rest."""
    script.say(LONG_REPLY)
    script.say("Sorry, go ahead.")
    script.hear("Stop please.")
    async with start_server(limits={"audio_lead_s": 2.0}) as server:
        ws = await open_session(server, max_size=None)
        await ws.send(_speak(audio_input={"turn_detection": {"type": "server_vad"}}))
        await next_event(ws, "session.updated")
        await ws.send(_user_text("Tell me everything."))
        await ws.send(json.dumps({"type": "response.create"}))
        await next_event(ws, "response.output_audio.delta")
        await _stream(ws, np.concatenate([speech_24k, np.zeros(24000 * 2, dtype=np.int16)]))
        events = await events_until(ws, "response.done")
        after = await events_until(ws, "response.done")  # the answer to the interruption
        await ws.close()

    started = next(i for i, e in enumerate(events) if e["type"].endswith("speech_started"))
    assert not any(e["type"] == "response.output_audio.delta" for e in events[started:])
    done = events[-1]["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "turn_detected")
    transcript = done["output"][0]["content"][0]["transcript"]
    assert transcript.startswith("Here is sentence number 1 of my answer.")
    assert "number 40" not in transcript
    first_prompt_after = script.prompts[1]
    assert transcript in first_prompt_after
    assert "number 40" not in first_prompt_after
    assert after[-1]["response"]["status"] == "completed"


async def test_a_truncate_after_a_barge_in_cuts_the_history_to_the_words_played(
    start_server, script
) -> None:
    """response.cancel, then a truncate at 1 s: the next prompt holds only the first words."""
    script.say(LONG_REPLY)
    script.say("Fine.")
    async with start_server(limits={"audio_lead_s": 2.0}) as server:
        ws = await open_session(server, max_size=None)
        await ws.send(_speak())
        await next_event(ws, "session.updated")
        await ws.send(_user_text("Tell me everything."))
        await ws.send(json.dumps({"type": "response.create"}))
        delta = await next_event(ws, "response.output_audio.delta")
        await ws.send(json.dumps({"type": "response.cancel"}))
        await events_until(ws, "response.done")
        truncate = {
            "type": "conversation.item.truncate",
            "item_id": delta["item_id"],
            "content_index": 0,
            "audio_end_ms": 1000,
        }
        await ws.send(json.dumps(truncate))
        await next_event(ws, "conversation.item.truncated")
        await ws.send(_user_text("Wait."))
        await ws.send(json.dumps({"type": "response.create"}))
        await events_until(ws, "response.done")
        await ws.close()
    prompt = script.prompts[-1]
    assert "Here is" in prompt
    assert "of my answer" not in prompt
    assert len(base64.b64decode(delta["delta"])) > 0


async def test_a_short_reply_is_said_in_the_language_of_the_transcription(
    start_server, script
) -> None:
    """With audio.input.transcription.language "fr" and the server's own voice, a reply too
    short to tell its language ("OK.") is said by the French voice, not the English default."""
    said: list[tuple[str, str]] = []

    def recorder(voice: str, words_per_minute: int) -> Any:
        class Voice:
            sample_rate_hz = 16000

            def synthesize(self, text: str) -> np.ndarray:
                said.append((voice, text))
                return np.zeros(8000, dtype=np.int16)

        return Voice()

    name = f"recorder-{uuid.uuid4().hex[:8]}"
    register_engine(name, recorder)
    script.say("OK.")
    async with start_server(speech_settings=SpeechSettings(engine=name)) as server:
        ws = await open_session(server)
        await ws.send(_speak(audio_input={"transcription": {"language": "fr"}}))
        await next_event(ws, "session.updated")
        await ws.send(_user_text("Allume la lumière."))
        await ws.send(json.dumps({"type": "response.create"}))
        events = await events_until(ws, "response.done")
        await ws.close()
    assert events[-1]["response"]["status"] == "completed"
    assert [voice for voice, text in said if text == "OK."] == ["fr-fr"]
