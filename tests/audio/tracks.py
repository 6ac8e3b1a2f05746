"""Test tracks: real espeak-ng speech laid out at known times, noise beds, segmenter runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from assistant.audio.vad import VadEvent, VadSegmenter
from assistant.events import SAMPLE_RATE_HZ, SpeechStarted, SpeechStopped, Utterance
from assistant.testing.speech import sounding, synthesize

SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000


SOUNDING_LEVEL = round(32767 * 10 ** (-50 / 20))
"""Samples above -50 dBFS count as sound: espeak-ng fades some words out far below that."""


@lru_cache(maxsize=64)
def _spoken(text: str, voice: str, words_per_minute: int) -> np.ndarray:
    return sounding(
        synthesize(text, voice=voice, words_per_minute=words_per_minute), SOUNDING_LEVEL
    )


def speech(text: str, voice: str = "en-us", words_per_minute: int = 160) -> np.ndarray:
    """espeak-ng speech cut to its sounding part (espeak-ng pads it with silence)."""
    return _spoken(text, voice, words_per_minute).copy()


@dataclass(frozen=True)
class Track:
    """A 16 kHz int16 track and where the speech in it truly is."""

    pcm: np.ndarray
    speech_ms: list[tuple[int, int]]


def lay_out(parts: Sequence[np.ndarray | float], noise_dbfs: float | None = -55.0) -> Track:
    """Concatenate speech clips and pauses (floats, in seconds) over a faint white-noise bed."""
    pieces: list[np.ndarray] = []
    truth: list[tuple[int, int]] = []
    position = 0
    for part in parts:
        if isinstance(part, np.ndarray):
            truth.append((position // SAMPLES_PER_MS, (position + len(part)) // SAMPLES_PER_MS))
            piece = part.astype(np.float64)
        else:
            piece = np.zeros(round(part * SAMPLE_RATE_HZ))
        pieces.append(piece)
        position += len(piece)
    track = np.concatenate(pieces)
    if noise_dbfs is not None:
        track += noise("white", len(track) / SAMPLE_RATE_HZ, noise_dbfs) * 32767.0
    return Track(np.clip(np.round(track), -32768, 32767).astype(np.int16), truth)


def noise(kind: str, seconds: float, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """float64 noise in -1..1 at an RMS level: ``white``, ``pink`` (1/f) or ``hum`` (50 Hz)."""
    n = round(seconds * SAMPLE_RATE_HZ)
    rng = np.random.default_rng(seed)
    if kind == "white":
        signal = rng.standard_normal(n)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        signal = np.fft.irfft(spectrum, n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE_HZ
        signal = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((50, 1.0), (100, 0.5), (150, 0.3)))
    else:
        raise ValueError(kind)
    return signal / np.sqrt(np.mean(signal**2)) * 10 ** (level_dbfs / 20)


def run(
    segmenter: VadSegmenter,
    pcm: np.ndarray,
    chunk_samples: int = 320,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> list[VadEvent]:
    """Feed a whole track in chunks, then flush; return every event."""
    events: list[VadEvent] = []
    for offset in range(0, len(pcm), chunk_samples):
        events.extend(segmenter.process(pcm[offset : offset + chunk_samples], sample_rate_hz))
    return events + segmenter.flush()


def utterances(events: Sequence[VadEvent]) -> list[Utterance]:
    """The utterances among ``events``."""
    return [e for e in events if isinstance(e, Utterance)]


def speech_events(events: Sequence[VadEvent]) -> list[VadEvent]:
    """The started/stopped/utterance events (the ``SpeechEndLikely`` hints left out)."""
    return [e for e in events if isinstance(e, SpeechStarted | SpeechStopped | Utterance)]
