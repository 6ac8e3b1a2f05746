"""Spoken replies through the official openai SDK: playable speech, transcripts, truncation."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from tests.support.realtime_sdk import TOKEN, events_until, sdk_client

REPLY = "The kitchen light is on now. The oven is still warm. Dinner is ready at seven tonight."
FIRST_SENTENCE = "The kitchen light is on now."

pytestmark = pytest.mark.timeout(120)


async def _ask(conn: Any, text: str) -> list[Any]:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await conn.response.create()
    return await events_until(conn, "response.done")


async def _speak_session(conn: Any, **output: Any) -> Any:
    await conn.session.update(
        session={"type": "realtime", "output_modalities": ["audio"], "audio": {"output": output}}
    )
    return (await events_until(conn, "session.updated"))[-1]


def _pcm(events: list[Any], item_id: str | None = None) -> np.ndarray:
    chunks = [
        base64.b64decode(e.delta)
        for e in events
        if e.type == "response.output_audio.delta" and item_id in (None, e.item_id)
    ]
    return np.frombuffer(b"".join(chunks), dtype="<i2")


@pytest.fixture
async def sdk_server(start_server):
    """A token-protected server."""
    async with start_server(token=TOKEN) as running:
        yield running


async def test_an_audio_reply_is_playable_speech_at_24_khz(sdk_server, script) -> None:
    """Asking for audio: PCM16 deltas at 24 kHz that sound (not silence) for about as long as
    the reply takes to say, its transcript, and no output_text events."""
    script.say(REPLY)
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        updated = await _speak_session(conn)
        events = await _ask(conn, "Is dinner ready?")
    assert updated.session.output_modalities == ["audio"]
    assert updated.session.audio.output.format.rate == 24000
    pcm = _pcm(events)
    duration_s = len(pcm) / 24000
    words = len(REPLY.split())
    # espeak-ng speaks 175 words a minute by default, with pauses between sentences.
    assert words / 175 * 60 * 0.6 < duration_s < words / 175 * 60 * 2.0
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    assert rms > 300
    assert not any(e.type.startswith("response.output_text") for e in events)


async def test_an_audio_reply_carries_its_transcript_in_openai_shapes(sdk_server, script) -> None:
    """The transcript deltas add up to the reply; the item holds an output_audio part with that
    transcript; response.created and response.done say the output is audio."""
    script.say(REPLY)
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await _speak_session(conn)
        events = await _ask(conn, "Is dinner ready?")
    kinds = [e.type for e in events]
    order = [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    firsts = [kinds.index(kind) for kind in order]
    assert firsts == sorted(firsts)
    deltas = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    done = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert deltas == done.transcript == REPLY
    part = next(e for e in events if e.type == "response.content_part.done").part
    assert (part.type, part.transcript) == ("audio", REPLY)
    response = events[-1].response
    assert response.status == "completed"
    assert response.output_modalities == ["audio"]
    (item,) = response.output
    assert [(c.type, c.transcript) for c in item.content] == [("output_audio", REPLY)]
    created = next(e for e in events if e.type == "response.created")
    assert created.response.output_modalities == ["audio"]


async def test_output_at_16_khz_when_the_session_asks(sdk_server, script) -> None:
    """audio.output.format rate 16000: the same speech comes at 16 kHz (two thirds the bytes)."""
    script.say(FIRST_SENTENCE)
    script.say(FIRST_SENTENCE)
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await _speak_session(conn)
        at_24k = _pcm(await _ask(conn, "The light?"))
        updated = await _speak_session(conn, format={"type": "audio/pcm", "rate": 16000})
        at_16k = _pcm(await _ask(conn, "The light again?"))
    assert updated.session.audio.output.format.rate == 16000
    assert abs(len(at_16k) / 16000 - len(at_24k) / 24000) < 0.05


async def test_a_truncate_leaves_only_the_heard_words_in_the_history(sdk_server, script) -> None:
    """After a truncate at the end of the first sentence's audio, the server answers
    conversation.item.truncated and the next prompt holds the first sentence, not the rest."""
    script.say(REPLY)
    script.say("You are welcome.")
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await _speak_session(conn)
        events = await _ask(conn, "Is dinner ready?")
        item_id = events[-1].response.output[0].id
        # The audio of the first sentence: the deltas before the second transcript delta.
        first_audio_bytes = 0
        for e in events:
            if e.type == "response.output_audio_transcript.delta" and first_audio_bytes:
                break
            if e.type == "response.output_audio.delta":
                first_audio_bytes += len(base64.b64decode(e.delta))
        played_ms = first_audio_bytes // 2 * 1000 // 24000
        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=played_ms
        )
        truncated = (await events_until(conn, "conversation.item.truncated"))[-1]
        await _ask(conn, "Thanks.")
    assert (truncated.item_id, truncated.audio_end_ms) == (item_id, played_ms)
    assert FIRST_SENTENCE in script.prompts[-1]
    assert "oven" not in script.prompts[-1]


async def test_a_truncate_in_the_middle_of_a_sentence_keeps_its_first_words(
    sdk_server, script
) -> None:
    """Half-way through a one-sentence reply's audio, the history keeps about half its words."""
    sentence = "one two three four five six seven eight nine ten"
    script.say(sentence)
    script.say("Fine.")
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await _speak_session(conn)
        events = await _ask(conn, "Count.")
        half_ms = len(_pcm(events)) * 1000 // 24000 // 2
        await conn.conversation.item.truncate(
            item_id=events[-1].response.output[0].id, content_index=0, audio_end_ms=half_ms
        )
        await events_until(conn, "conversation.item.truncated")
        await _ask(conn, "Go on.")
    prompt = script.prompts[-1]
    assert "one two three four" in prompt
    assert "eight nine ten" not in prompt


async def test_response_create_may_ask_for_audio_in_a_text_session(sdk_server, script) -> None:
    """response.create with output_modalities ["audio"] speaks that response only."""
    script.say(FIRST_SENTENCE)
    script.say(FIRST_SENTENCE)
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        content = [{"type": "input_text", "text": "The light?"}]
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": content}
        )
        await conn.response.create(response={"output_modalities": ["audio"]})
        spoken = await events_until(conn, "response.done")
        written = await _ask(conn, "And now?")
    assert len(_pcm(spoken)) > 0
    assert spoken[-1].response.output_modalities == ["audio"]
    assert len(_pcm(written)) == 0
    assert any(e.type == "response.output_text.delta" for e in written)


async def test_an_espeak_voice_named_by_the_client_speaks(sdk_server, script) -> None:
    """voice "fr-fr" (an installed espeak-ng voice) is accepted and echoed in session.updated;
    OpenAI's "marin" is accepted too (the server's own voice)."""
    script.say("Il fait beau à Paris aujourd'hui.")
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        french = await _speak_session(conn, voice="fr-fr")
        events = await _ask(conn, "Quel temps fait-il ?")
        openai_voice = await _speak_session(conn, voice="marin")
    assert french.session.audio.output.voice == "fr-fr"
    assert len(_pcm(events)) > 24000 // 2
    assert openai_voice.session.audio.output.voice == "marin"


async def test_a_reply_with_control_characters_is_spoken_and_so_is_the_next(
    sdk_server, script
) -> None:
    """A NUL (and an escape) in a reply's text: that sentence is still spoken, no error comes,
    and the next reply is spoken too."""
    script.say("The oven\x00 is warm.\x1b Dinner is ready.")
    script.say(FIRST_SENTENCE)
    async with sdk_client(sdk_server).realtime.connect(model="voxtral") as conn:
        await _speak_session(conn)
        first = await _ask(conn, "Is dinner ready?")
        second = await _ask(conn, "And the light?")
    assert not any(e.type == "error" for e in first + second)
    transcript = next(e for e in first if e.type == "response.output_audio_transcript.done")
    assert "\x00" in transcript.transcript
    # Both sentences of the first reply sound: well over one short sentence of audio.
    assert len(_pcm(first)) / 24000 > 1.5
    assert len(_pcm(second)) / 24000 > 0.8
    assert first[-1].response.status == second[-1].response.status == "completed"
