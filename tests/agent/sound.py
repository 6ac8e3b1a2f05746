"""Measuring recorded sound in the agent's tests, and watching what the speaker plays."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from assistant.speech.playback import SoundDevicePlayer

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


class WatchedPlayer(SoundDevicePlayer):
    """The real player, counting the clips it has started and finished playing.

    Tests time themselves by these counts rather than by the clock: on a busy machine sound
    starts late.
    """

    def __init__(self) -> None:
        super().__init__()
        self.started = 0
        self.finished = 0

    @property
    def playing(self) -> bool:
        """Whether a ``play()`` call is running."""
        return self.started > self.finished

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: threading.Event) -> float:
        """Play as usual, counted (on the playing thread; tests read the counts elsewhere)."""
        self.started += 1
        try:
            return super().play(pcm, sample_rate_hz, stop)
        finally:
            self.finished += 1
