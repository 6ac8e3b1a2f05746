"""The wake-word chime: a short rising two-note tone, generated (no sound file to ship)."""

from __future__ import annotations

import numpy as np

from assistant.events import SAMPLE_RATE_HZ

CHIME_NOTES_HZ = (660.0, 880.0)
NOTE_S = 0.09
LEVEL_DBFS = -14.0


def chime_pcm(sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """The chime as mono int16 PCM: two sine notes with raised-cosine edges (no clicks)."""
    n = round(NOTE_S * sample_rate_hz)
    t_s = np.arange(n) / sample_rate_hz
    fade = min(n // 2, round(0.01 * sample_rate_hz))
    envelope = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
    envelope[:fade], envelope[n - fade :] = ramp, ramp[::-1]
    amplitude = 10 ** (LEVEL_DBFS / 20)
    notes = [amplitude * envelope * np.sin(2 * np.pi * f * t_s) for f in CHIME_NOTES_HZ]
    pcm: np.ndarray = np.round(np.concatenate(notes) * 32767).astype(np.int16)
    return pcm
