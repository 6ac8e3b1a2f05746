"""Text-to-speech: Home Assistant's one-shot and streaming synthesize sequences."""

from __future__ import annotations

import asyncio

import numpy as np
from wyoming.audio import AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeVoice

from assistant.speech.synthesis import EspeakSynthesizer
from tests.server.wyoming import ha

HOST = "127.0.0.1"
FIRST, SECOND = "The bed light is off.", "The kitchen lights are on."


def spoken(*sentences: str, voice: str = "en-us") -> np.ndarray:
    """What the synthesizer makes of each sentence, one after the other."""
    espeak = EspeakSynthesizer(voice)
    return np.concatenate([espeak.synthesize(sentence) for sentence in sentences])


async def test_synthesize_sends_one_stream_of_the_whole_text(wyoming) -> None:
    """audio-start, chunks, audio-stop; the audio is every sentence, once, in order."""
    speech = await ha.synthesize(HOST, wyoming.port, f"{FIRST} {SECOND}")
    assert speech.types[0] == "audio-start" and speech.types[-1] == "audio-stop"
    assert set(speech.types[1:-1]) == {"audio-chunk"}
    assert np.array_equal(speech.samples(), spoken(FIRST, SECOND))


async def test_a_streamed_text_is_spoken_once(wyoming) -> None:
    """Chunks, then the whole text again as synthesize: every sentence is heard once."""
    pieces = ["The bed ", "light is off. The kitchen", " lights are on."]
    speech = await ha.synthesize_streaming(HOST, wyoming.port, pieces)
    assert np.array_equal(speech.samples(), spoken(FIRST, SECOND))
    assert speech.types[-2:] == ["audio-stop", "synthesize-stopped"]


async def test_a_stream_has_one_audio_format(wyoming) -> None:
    """One audio-start and one audio-stop for the whole stream, every chunk in its format."""
    speech = await ha.synthesize_streaming(HOST, wyoming.port, [FIRST + " ", SECOND])
    assert speech.types.count("audio-start") == 1 and speech.types.count("audio-stop") == 1
    start = AudioStart.from_event(speech.events[0])
    chunks = [e.data for e in speech.events if e.type == "audio-chunk"]
    assert {(c["rate"], c["width"], c["channels"]) for c in chunks} == {
        (start.rate, start.width, start.channels)
    }


async def test_the_first_sentence_sounds_before_the_text_ends(wyoming) -> None:
    """Audio for a complete sentence arrives while the rest of the text is still to come."""
    speech = await ha.synthesize_streaming(
        HOST, wyoming.port, [FIRST + " ", SECOND], first_audio_before_more_text=True
    )
    assert np.array_equal(speech.samples(), spoken(FIRST, SECOND))


async def test_a_chosen_voice_is_used(start_wyoming) -> None:
    """The voice Home Assistant picks from the offered ones speaks."""
    async with start_wyoming(voices=["en-us", "fr"]) as server:
        speech = await ha.synthesize(HOST, server.port, "Bonjour.", voice="fr")
    assert np.array_equal(speech.samples(), spoken("Bonjour.", voice="fr"))


async def test_an_unknown_voice_is_refused_and_the_connection_closed(wyoming) -> None:
    """A voice the server does not offer: an error naming the offered ones, then the end."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        voice = SynthesizeVoice(name="robot")
        await client.write_event(Synthesize(text="Hi.", voice=voice).event())
        event = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
        end = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert event is not None
    error = Error.from_event(event)
    assert error.code == "unknown_voice" and "en-us" in error.text
    assert end is None


async def test_a_chunk_outside_a_stream_is_refused(wyoming) -> None:
    """synthesize-chunk without synthesize-start gets an error; the connection serves on."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(SynthesizeChunk(text="Hello.").event())
        error = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
        await client.write_event(Synthesize(text="Hello.").event())
        start = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert error is not None and Error.from_event(error).code == "invalid_sequence"
    assert start is not None and start.type == "audio-start"
