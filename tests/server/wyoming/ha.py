"""Home Assistant's Wyoming client sequences, replayed with the real ``wyoming`` client.

Each function does what Home Assistant's wyoming integration does for one request (read in
``homeassistant/components/wyoming/``: ``data.py`` for describe, ``stt.py``, ``conversation.py``,
``tts.py``): one TCP connection per request, the same events in the same order, the same stop
conditions. Only the waits are longer (Home Assistant gives ``describe`` 1 s): the tests run on
a busy machine and never assert on speed.
"""

from __future__ import annotations

import asyncio
import io
import wave
from dataclasses import dataclass, field

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

WAIT_S = 60.0
"""Longest wait for any one answer."""

SAMPLE_RATE, SAMPLE_WIDTH, SAMPLE_CHANNELS = 16000, 2, 1
"""The format Home Assistant streams to speech-to-text (its const.py)."""

CHUNK_SAMPLES = 1024


def chunks_of(pcm: np.ndarray) -> list[bytes]:
    """16 kHz int16 audio as the byte chunks a microphone stream would deliver."""
    data = np.asarray(pcm, dtype="<i2").tobytes()
    step = CHUNK_SAMPLES * SAMPLE_WIDTH
    return [data[i : i + step] for i in range(0, len(data), step)]


async def describe(host: str, port: int) -> Info:
    """``describe`` -> ``info`` (data.py)."""
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), WAIT_S)
            assert event is not None, "connection closed before info"
            if Info.is_type(event.type):
                return Info.from_event(event)


@dataclass
class SttResult:
    """What speech-to-text gave: the transcript or the error, and whether audio-stop was sent."""

    transcript: Transcript | None = None
    error: Error | None = None
    audio_stop_sent: bool = False


async def transcribe(
    host: str,
    port: int,
    pcm: np.ndarray,
    language: str | None = "en",
    *,
    microphone_stays_open: bool = False,
) -> SttResult:
    """stt.py since 2026.5: upload and receive at once; the first answer wins.

    ``microphone_stays_open``: after the audio, the stream neither ends nor sends more (Home
    Assistant's pipeline with a server that detects the end of speech: only the answer ends it).
    """
    result = SttResult()
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(SAMPLE_RATE, SAMPLE_WIDTH, SAMPLE_CHANNELS).event())

        async def upload() -> None:
            for chunk in chunks_of(pcm):
                await client.write_event(
                    AudioChunk(SAMPLE_RATE, SAMPLE_WIDTH, SAMPLE_CHANNELS, chunk).event()
                )
            if microphone_stays_open:
                await asyncio.Event().wait()
            await client.write_event(AudioStop().event())
            result.audio_stop_sent = True

        async def receive() -> None:
            while True:
                event = await client.read_event()
                if event is None:
                    return
                if Error.is_type(event.type):
                    result.error = Error.from_event(event)
                    return
                if Transcript.is_type(event.type):
                    result.transcript = Transcript.from_event(event)
                    return

        uploading = asyncio.create_task(upload())
        receiving = asyncio.create_task(receive())
        try:
            done, _ = await asyncio.wait(
                {uploading, receiving}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED
            )
            if receiving not in done:
                await asyncio.wait_for(receiving, WAIT_S)
        finally:
            for task in (uploading, receiving):
                task.cancel()
            await asyncio.gather(uploading, receiving, return_exceptions=True)
    return result


async def transcribe_sequentially(
    host: str, port: int, pcm: np.ndarray, language: str | None = "en"
) -> Transcript:
    """stt.py before 2026.5: write everything up to audio-stop, then read the transcript."""
    async with AsyncTcpClient(host, port) as client:
        await client.write_event(Transcribe(language=language).event())
        await client.write_event(AudioStart(SAMPLE_RATE, SAMPLE_WIDTH, SAMPLE_CHANNELS).event())
        for chunk in chunks_of(pcm):
            await client.write_event(
                AudioChunk(SAMPLE_RATE, SAMPLE_WIDTH, SAMPLE_CHANNELS, chunk).event()
            )
        await client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), WAIT_S)
            assert event is not None, "connection closed before the transcript"
            if Transcript.is_type(event.type):
                return Transcript.from_event(event)


async def converse(
    host: str, port: int, text: str, conversation_id: str, language: str = "en"
) -> Event:
    """conversation.py: the text with the conversation id; handled, not-handled or error."""
    async with AsyncTcpClient(host, port) as client:
        context = {"conversation_id": conversation_id, "device_id": "kitchen-satellite"}
        await client.write_event(Transcript(text, context=context, language=language).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), WAIT_S)
            assert event is not None, "connection lost before an answer"
            if (
                Handled.is_type(event.type)
                or NotHandled.is_type(event.type)
                or Error.is_type(event.type)
            ):
                return event


@dataclass
class Speech:
    """What text-to-speech sent: every event, and the audio as a WAV file."""

    events: list[Event] = field(default_factory=list)
    wav: bytes = b""

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def samples(self) -> np.ndarray:
        """The audio as int16 samples (the WAV's frames)."""
        with wave.open(io.BytesIO(self.wav), "rb") as wav:
            return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


async def synthesize(host: str, port: int, text: str, voice: str | None = None) -> Speech:
    """tts.py, one-shot: synthesize; audio chunks into a WAV until audio-stop."""
    speech = Speech()
    async with AsyncTcpClient(host, port) as client:
        chosen = SynthesizeVoice(name=voice) if voice else None
        await client.write_event(Synthesize(text=text, voice=chosen).event())
        pcm = bytearray()
        first: AudioChunk | None = None
        while True:
            event = await asyncio.wait_for(client.read_event(), WAIT_S)
            assert event is not None, "connection lost before audio-stop"
            speech.events.append(event)
            if AudioStop.is_type(event.type):
                break
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                first = first or chunk  # the WAV takes the first chunk's format
                pcm += chunk.audio
        if first is not None:
            speech.wav = _wav(bytes(pcm), first.rate, first.width, first.channels)
    return speech


async def synthesize_streaming(
    host: str,
    port: int,
    pieces: list[str],
    voice: str | None = None,
    *,
    first_audio_before_more_text: bool = False,
) -> Speech:
    """tts.py, streaming: text written as it comes (a task), audio read at the same time.

    synthesize-start, synthesize-chunk per piece, the whole text again as synthesize (for
    older servers), synthesize-stop; the WAV header from the first audio-start, then every
    chunk's audio, until synthesize-stopped. ``first_audio_before_more_text``: after the first
    piece, wait until audio arrives (only a server that speaks before the text ends can pass).
    """
    speech = Speech()
    first_audio = asyncio.Event()
    chosen = SynthesizeVoice(name=voice) if voice else None
    async with AsyncTcpClient(host, port) as client:

        async def write_text() -> None:
            await client.write_event(SynthesizeStart(voice=chosen).event())
            for index, piece in enumerate(pieces):
                await client.write_event(SynthesizeChunk(text=piece).event())
                if index == 0 and first_audio_before_more_text:
                    await first_audio.wait()
            await client.write_event(Synthesize(text="".join(pieces), voice=chosen).event())
            await client.write_event(SynthesizeStop().event())

        writing = asyncio.create_task(write_text())
        try:
            pcm = bytearray()
            header = b""
            while True:
                event = await asyncio.wait_for(client.read_event(), WAIT_S)
                assert event is not None, "connection lost before synthesize-stopped"
                speech.events.append(event)
                if AudioStart.is_type(event.type) and not header:
                    start = AudioStart.from_event(event)
                    header = _wav(b"", start.rate, start.width, start.channels)
                elif AudioChunk.is_type(event.type) and header:
                    pcm += AudioChunk.from_event(event).audio
                    first_audio.set()
                elif SynthesizeStopped.is_type(event.type):
                    break
            await asyncio.wait_for(writing, WAIT_S)
        finally:
            writing.cancel()
        start = AudioStart.from_event(next(e for e in speech.events if e.type == "audio-start"))
        speech.wav = _wav(bytes(pcm), start.rate, start.width, start.channels)
    return speech


def _wav(frames: bytes, rate: int, width: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setframerate(rate)
        wav.setsampwidth(width)
        wav.setnchannels(channels)
        wav.writeframes(frames)
    return buffer.getvalue()
