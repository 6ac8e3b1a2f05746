"""Spoken replies: espeak-ng synthesis and playback through PortAudio, sentence by sentence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.events import SpokenSentence
from assistant.speech.errors import SpeechError
from assistant.speech.playback import SoundDevicePlayer
from assistant.speech.speaker import Speaker
from assistant.speech.synthesis import EspeakSynthesizer
from tests.agent.sound import WatchedPlayer, read_pcm, sounding_s
from tests.support.pulse import VirtualAudio

FIRST = "The kitchen lights are now on."
SECOND = "Is there anything else I can do?"


def test_espeak_speaks_longer_text_for_longer() -> None:
    """Synthesis gives audible int16 speech whose length grows with the text."""
    synthesizer = EspeakSynthesizer()
    short = synthesizer.synthesize("Yes.")
    long = synthesizer.synthesize(f"{FIRST} {SECOND}")
    rate = synthesizer.sample_rate_hz
    assert short.dtype.name == "int16" and rate == 22050
    assert sounding_s(short, rate) > 0.1
    assert sounding_s(long, rate) > 3 * sounding_s(short, rate)


def test_an_unknown_voice_is_a_clear_error() -> None:
    """A voice espeak-ng does not have fails with its name in the message."""
    with pytest.raises(SpeechError, match="'xx-nope'"):
        EspeakSynthesizer(voice="xx-nope").synthesize("Hello")


def test_an_absurd_speech_rate_is_refused() -> None:
    """The speech rate must be a usable number of words per minute."""
    with pytest.raises(ValueError, match="words_per_minute"):
        EspeakSynthesizer(words_per_minute=5)


def test_a_missing_output_device_is_a_clear_error() -> None:
    """Checking a speaker that does not exist says how to go on (``--no-speak``)."""
    with pytest.raises(SpeechError, match="--no-speak"):
        SoundDevicePlayer("no such speaker anywhere").check(22050)


async def _speak(*sentences: str) -> tuple[Speaker, list[SpokenSentence], list[bool]]:
    """A started speaker saying ``sentences``; the sentences played and the speaking states."""
    spoken: list[SpokenSentence] = []
    states: list[bool] = []
    speaker = Speaker(
        EspeakSynthesizer(), SoundDevicePlayer(), on_spoken=spoken.append, on_speaking=states.append
    )
    await speaker.start()
    for sentence in sentences:
        speaker.say(sentence)
    return speaker, spoken, states


async def test_sentences_are_played_in_order_and_heard(
    virtual_audio: VirtualAudio, tmp_path: Path
) -> None:
    """Both sentences reach the speaker, in order, as long as they take to say."""
    synthesizer = EspeakSynthesizer()
    expected_s = sum(
        sounding_s(synthesizer.synthesize(s), synthesizer.sample_rate_hz) for s in (FIRST, SECOND)
    )
    recording = virtual_audio.record(tmp_path / "speaker.wav")
    speaker, spoken, states = await _speak(FIRST, SECOND)
    assert speaker.speaking
    await speaker.drain()
    await asyncio.sleep(0.3)
    await speaker.aclose()
    heard_s = sounding_s(*read_pcm(recording.stop()))
    assert [s.text for s in spoken] == [FIRST, SECOND]
    assert not any(s.interrupted for s in spoken)
    assert states == [True, False]
    assert not speaker.speaking and speaker.last_sound_end_s <= time.monotonic()
    assert heard_s == pytest.approx(expected_s, rel=0.2)


async def test_an_interruption_stops_speech_and_tells_what_was_heard(
    virtual_audio: VirtualAudio,
) -> None:
    """Barge-in cuts the sentence short, drops the queue, and returns the words heard."""
    speaker, spoken, _ = await _speak(FIRST, SECOND)
    sound = asyncio.Event()
    speaker.on_speaking = lambda speaking: sound.set()  # set before any sound: no await since
    await sound.wait()
    await asyncio.sleep(0.8)
    heard = await speaker.interrupt()
    await speaker.aclose()
    assert [s.text for s in spoken] == [FIRST]
    assert spoken[0].interrupted and 0.3 < spoken[0].duration_s < 1.5
    assert heard and FIRST.startswith(heard) and heard != FIRST
    assert not speaker.speaking


async def test_nothing_is_heard_when_nothing_was_said(virtual_audio: VirtualAudio) -> None:
    """Interrupting an idle speaker returns no text and does not wait."""
    speaker = await Speaker(EspeakSynthesizer(), SoundDevicePlayer()).start()
    assert await speaker.interrupt() == ""
    await speaker.aclose()


class _BrokenSynthesizer:
    """A synthesizer with a bug: every sentence raises an error nobody foresaw."""

    sample_rate_hz = 22050

    def synthesize(self, text: str) -> np.ndarray:
        raise RuntimeError(f"cannot say {text!r}")


async def test_an_unforeseen_speech_error_ends_speech_without_hanging_the_reply() -> None:
    """A crashing synthesizer becomes the speaker's failure; draining the queue still ends."""
    speaker = await Speaker(_BrokenSynthesizer(), SoundDevicePlayer()).start()
    speaker.say(FIRST)
    speaker.say(SECOND)
    await asyncio.wait_for(speaker.drain(), timeout=10)
    await speaker.aclose()
    assert isinstance(speaker.failure, SpeechError)
    assert "RuntimeError" in str(speaker.failure) and not speaker.speaking


async def test_closing_the_speaker_mid_sentence_closes_the_output_first(
    virtual_audio: VirtualAudio,
) -> None:
    """``aclose()`` returns once the sentence being played has stopped and its stream is closed."""
    player = WatchedPlayer()
    speaker = await Speaker(EspeakSynthesizer(), player).start()
    sound = asyncio.Event()
    speaker.on_speaking = lambda speaking: sound.set()
    speaker.say(FIRST)
    await sound.wait()
    await asyncio.sleep(0.3)
    assert player.playing
    await speaker.aclose()
    assert not player.playing
