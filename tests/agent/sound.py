"""Measuring recorded sound in the agent's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

FRAME_S = 0.02
SILENCE_RMS = 300.0
"""int16 RMS under which a frame counts as silent (espeak-ng speech is far louder)."""


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    """A WAV file as int16 samples of its first channel, and its rate."""
    pcm, rate = sf.read(str(path), dtype="int16", always_2d=True)
    return pcm[:, 0], rate


def sounding_s(pcm: np.ndarray, rate_hz: int) -> float:
    """Seconds of ``pcm`` that are not silent (20 ms frames above ``SILENCE_RMS``)."""
    frame = round(rate_hz * FRAME_S)
    usable = len(pcm) - len(pcm) % frame
    frames = pcm[:usable].astype(np.float64).reshape(-1, frame)
    rms = np.sqrt((frames**2).mean(axis=1))
    return float((rms > SILENCE_RMS).sum() * FRAME_S)
