"""Speech-to-text requests: when to answer, and with which audio (synchronous, no I/O).

A ``CommandListener`` follows one ``transcribe`` + ``audio-start`` / ``audio-chunk`` /
``audio-stop`` request. With end-of-speech detection on, the VAD decides: the command is
complete once its speech is followed by silence (Home Assistant's 0.7 s by default, or what the
client's ``vad_sensitivity`` asks for), when it reaches ``max_command_s``, or when no speech
came for ``no_speech_timeout_s`` (an empty answer). Without it the listener keeps the audio
until ``audio-stop`` (or ``max_command_s``). Times are stream time, never the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.events import SAMPLE_RATE_HZ, SpeechStarted, Utterance

SENSITIVITY_SILENCE_MS = {"aggressive": 250, "relaxed": 1250}
"""Home Assistant's VAD sensitivities other than ``default``, as silence that ends a command."""

Reason = Literal["end_of_speech", "max_length", "no_speech", "audio_stop"]


@dataclass(frozen=True)
class Command:
    """A finished spoken command: its audio (None when nothing was said) and why it ended."""

    audio: np.ndarray | None
    reason: Reason


def command_vad_settings(
    base: VadSettings, silence_duration_ms: int, max_command_s: float, sensitivity: object
) -> VadSettings:
    """The VAD settings for one command: the silence that ends it, its longest length."""
    silence = SENSITIVITY_SILENCE_MS.get(str(sensitivity), silence_duration_ms)
    return base.model_copy(
        update={"silence_duration_ms": silence, "max_utterance_s": max_command_s}
    )


class CommandListener:
    """Audio of one request in; the ``Command`` out as soon as it is complete.

    ``segmenter`` None: no end-of-speech detection (the client's own VAD ends the stream).
    """

    def __init__(
        self,
        segmenter: VadSegmenter | None,
        *,
        max_command_s: float,
        no_speech_timeout_s: float,
    ) -> None:
        self._segmenter = segmenter
        self._max_samples = round(max_command_s * SAMPLE_RATE_HZ)
        self._no_speech_samples = round(no_speech_timeout_s * SAMPLE_RATE_HZ)
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._heard_speech = False
        self.command: Command | None = None
        """Set once the command is complete; later audio is ignored."""

    @property
    def audio_s(self) -> float:
        """Seconds of audio received."""
        return self._samples / SAMPLE_RATE_HZ

    def feed(self, pcm: np.ndarray) -> Command | None:
        """Add 16 kHz mono int16 audio; the command, the first time it is complete."""
        if self.command is not None:
            return None
        self._samples += len(pcm)
        if self._segmenter is None:
            self._chunks.append(pcm)
            if self._samples >= self._max_samples:
                return self._finish(self._collected(), "max_length")
            return None
        for event in self._segmenter.process(pcm):
            if isinstance(event, SpeechStarted):
                self._heard_speech = True
            elif isinstance(event, Utterance):
                return self._finish(event.pcm, "max_length" if event.truncated else "end_of_speech")
        if not self._heard_speech and self._samples >= self._no_speech_samples:
            return self._finish(None, "no_speech")
        return None

    def stop(self) -> Command:
        """``audio-stop``: the command as it stands (a command already complete stays so)."""
        if self.command is not None:
            return self.command
        if self._segmenter is None:
            return self._finish(self._collected(), "audio_stop")
        for event in self._segmenter.flush():
            if isinstance(event, Utterance):
                return self._finish(event.pcm, "audio_stop")
        return self._finish(None, "audio_stop")

    def _collected(self) -> np.ndarray | None:
        if not self._samples:
            return None
        collected: np.ndarray = np.concatenate(self._chunks)[: self._max_samples]
        return collected

    def _finish(self, audio: np.ndarray | None, reason: Reason) -> Command:
        self.command = Command(audio, reason)
        self._chunks = []
        return self.command
