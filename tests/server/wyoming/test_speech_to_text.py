"""Speech-to-text: Home Assistant's transcribe sequences with real espeak-ng speech."""

from __future__ import annotations

import asyncio

import numpy as np
import soxr
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

from tests.server.wyoming import ha

HOST = "127.0.0.1"


async def test_the_transcript_arrives_while_the_microphone_is_still_open(
    wyoming, script, command_16k
) -> None:
    """The VAD ends the command: the transcript comes although audio-stop was never sent."""
    script.hear("Turn on the kitchen light.")
    result = await ha.transcribe(HOST, wyoming.port, command_16k, microphone_stays_open=True)
    assert result.transcript is not None, result.error
    assert result.transcript.text == "Turn on the kitchen light."
    assert not result.audio_stop_sent


async def test_the_transcript_names_the_language_asked_for(wyoming, script, command_16k) -> None:
    """Home Assistant's 'fr-FR' becomes Voxtral's lang:fr; the transcript says fr."""
    script.hear("Allume la lumière.")
    result = await ha.transcribe(HOST, wyoming.port, command_16k, language="fr-FR")
    assert result.transcript is not None
    assert result.transcript.language == "fr"
    assert "lang:fr[TRANSCRIBE]" in script.transcription_prompts[-1]


async def test_without_a_language_the_detected_one_is_named(wyoming, script, command_16k) -> None:
    """With no language the model detects it, and the transcript carries what it announced."""
    script.hear("lang:de Mach das Licht an.")
    result = await ha.transcribe(HOST, wyoming.port, command_16k, language=None)
    assert result.transcript is not None
    assert (result.transcript.text, result.transcript.language) == ("Mach das Licht an.", "de")


async def test_the_older_sequence_reads_after_audio_stop(wyoming, script, command_16k) -> None:
    """Home Assistant before 2026.5 writes everything, audio-stop included, then reads."""
    script.hear("Turn on the kitchen light.")
    transcript = await ha.transcribe_sequentially(HOST, wyoming.port, command_16k)
    assert transcript.text == "Turn on the kitchen light."


async def test_silence_alone_gets_an_empty_transcript(start_wyoming, script) -> None:
    """No speech within no_speech_timeout_s (stream time): an empty answer, the model unused."""
    async with start_wyoming(no_speech_timeout_s=2.0) as server:
        silence = np.zeros(16000 * 3, np.int16)
        result = await ha.transcribe(HOST, server.port, silence, microphone_stays_open=True)
    assert result.transcript is not None and result.transcript.text == ""
    assert script.transcription_prompts == []


async def test_without_detection_the_answer_waits_for_audio_stop(
    start_wyoming, script, command_16k
) -> None:
    """detect_end_of_speech off: nothing before audio-stop, then the whole audio's transcript."""
    script.hear("Turn on the kitchen light.")
    async with (
        start_wyoming(detect_end_of_speech=False) as server,
        AsyncTcpClient(HOST, server.port) as client,
    ):
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(16000, 2, 1).event())
        for chunk in ha.chunks_of(command_16k):
            await client.write_event(AudioChunk(16000, 2, 1, chunk).event())
        early = asyncio.create_task(client.read_event())
        done, _ = await asyncio.wait({early}, timeout=2.0)
        assert not done, "answered before audio-stop"
        await client.write_event(AudioStop().event())
        event = await asyncio.wait_for(early, ha.WAIT_S)
    assert event is not None and Transcript.from_event(event).text == "Turn on the kitchen light."


async def test_other_rates_and_channels_are_converted(wyoming, script, command_16k) -> None:
    """22.05 kHz stereo in: resampled and mixed down, the VAD still finds the command's end."""
    script.hear("Turn on the kitchen light.")
    mono = np.asarray(soxr.resample(command_16k, 16000, 22050), dtype=np.int16)
    stereo = np.repeat(mono, 2).tobytes()
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(AudioStart(22050, 2, 2).event())
        step = 2048 * 4
        for offset in range(0, len(stereo), step):
            payload = stereo[offset : offset + step]
            await client.write_event(AudioChunk(22050, 2, 2, payload).event())
        event = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert event is not None and Transcript.from_event(event).text == "Turn on the kitchen light."


async def test_a_chunk_before_audio_start_is_refused_and_the_request_goes_on(
    wyoming, script, command_16k
) -> None:
    """An out-of-order chunk gets an error event; the same connection then transcribes."""
    script.hear("Turn on the kitchen light.")
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(AudioChunk(16000, 2, 1, b"\0\0" * 160).event())
        error = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
        await client.write_event(AudioStart(16000, 2, 1).event())
        for chunk in ha.chunks_of(command_16k):
            await client.write_event(AudioChunk(16000, 2, 1, chunk).event())
        await client.write_event(AudioStop().event())
        answer = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert error is not None and Error.from_event(error).code == "invalid_sequence"
    assert answer is not None and Transcript.from_event(answer).text == "Turn on the kitchen light."


async def test_a_chunk_in_another_format_is_refused_and_loses_nothing(
    wyoming, script, command_16k
) -> None:
    """A chunk that changes the format mid-stream is refused; the stream's audio is intact."""
    script.hear("Turn on the kitchen light.")
    chunks = ha.chunks_of(command_16k)
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(AudioStart(16000, 2, 1).event())
        await client.write_event(AudioChunk(16000, 2, 1, chunks[0]).event())
        await client.write_event(AudioChunk(8000, 2, 1, b"\0\0" * 64).event())
        error = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
        for chunk in chunks[1:]:
            await client.write_event(AudioChunk(16000, 2, 1, chunk).event())
        answer = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert error is not None and Error.from_event(error).code == "invalid_audio"
    assert answer is not None and Transcript.from_event(answer).text == "Turn on the kitchen light."


async def test_an_unknown_language_is_refused_clearly(wyoming) -> None:
    """A language that is no ISO 639-1 code gets an error naming it."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(Transcribe(language="klingon").event())
        event = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert event is not None
    error = Error.from_event(event)
    assert error.code == "unsupported_language" and "'klingon'" in error.text
