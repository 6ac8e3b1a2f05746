"""Text-to-speech for Wyoming clients: the voices offered and the audio events of one request.

The synthesis engine stays behind ``assistant.speech.synthesis.Synthesizer`` (a blocking
``synthesize(text) -> int16 PCM`` with a ``sample_rate_hz``), run in a thread. A request's
text is spoken sentence by sentence (``SentenceSplitter``), so a streamed reply starts to sound
as soon as its first sentence is complete. One request is one audio stream in one format: a
single ``audio-start``, chunks, a single ``audio-stop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event

from assistant.server.wyoming.info import voice_language
from assistant.server.wyoming.protocol import RefusedEvent
from assistant.speech.synthesis import Synthesizer

CHUNK_SAMPLES = 1024
"""Samples per ``audio-chunk`` (about 46 ms at espeak-ng's 22.05 kHz)."""

SAMPLE_WIDTH_BYTES = 2


class Voices:
    """The synthesizers offered, by voice name; the first one is the default."""

    def __init__(self, synthesizers: Mapping[str, Synthesizer]) -> None:
        if not synthesizers:
            raise ValueError("at least one voice is needed")
        self._by_name = dict(synthesizers)
        self.default = next(iter(self._by_name))

    @property
    def names(self) -> list[str]:
        """Voice names, the default first."""
        return list(self._by_name)

    def pick(self, voice: Any) -> Synthesizer:
        """The synthesizer for a request's ``voice`` (``{"name"}`` or ``{"language"}``)."""
        if not voice:
            return self._by_name[self.default]
        if not isinstance(voice, dict):
            raise RefusedEvent("invalid_event", f"voice must be an object, not {voice!r}")
        name = voice.get("name")
        if name is not None:
            if name not in self._by_name:
                raise RefusedEvent(
                    "unknown_voice",
                    f"no voice {name!r}; this server offers {', '.join(self._by_name)}",
                    fatal=True,
                )
            return self._by_name[name]
        language = str(voice.get("language") or "").replace("_", "-").split("-")[0].lower()
        for voice_name, synthesizer in self._by_name.items():
            if voice_language(voice_name) == language:
                return synthesizer
        return self._by_name[self.default]


class AudioOut:
    """The audio events of one speech request, written as sentences are synthesized."""

    def __init__(self, synthesizer: Synthesizer, write: Callable[[Event], Awaitable[None]]) -> None:
        self._synthesizer = synthesizer
        self._write = write
        self._rate_hz: int | None = None
        self.samples = 0
        """Samples sent so far."""

    async def say(self, sentence: str) -> None:
        """Synthesize one sentence (in a thread) and send its audio."""
        pcm = await asyncio.to_thread(self._synthesizer.synthesize, sentence)
        rate_hz = self._synthesizer.sample_rate_hz
        if self._rate_hz is None:
            await self._start(rate_hz)
        elif rate_hz != self._rate_hz:
            import soxr  # one format per stream, whatever a later sentence came out at

            pcm = np.asarray(soxr.resample(pcm, rate_hz, self._rate_hz), dtype=np.int16)
        stream_rate = self._rate_hz or rate_hz
        for offset in range(0, len(pcm), CHUNK_SAMPLES):
            block = np.ascontiguousarray(pcm[offset : offset + CHUNK_SAMPLES], dtype="<i2")
            await self._write(
                AudioChunk(
                    rate=stream_rate,
                    width=SAMPLE_WIDTH_BYTES,
                    channels=1,
                    audio=block.tobytes(),
                    timestamp=self.samples * 1000 // stream_rate,
                ).event()
            )
            self.samples += len(block)

    async def finish(self) -> None:
        """End the stream (an empty request still gets its ``audio-start``)."""
        if self._rate_hz is None:
            await self._start(self._synthesizer.sample_rate_hz)
        await self._write(AudioStop(timestamp=self.samples * 1000 // (self._rate_hz or 1)).event())

    async def _start(self, rate_hz: int) -> None:
        self._rate_hz = rate_hz
        await self._write(
            AudioStart(rate=rate_hz, width=SAMPLE_WIDTH_BYTES, channels=1, timestamp=0).event()
        )
