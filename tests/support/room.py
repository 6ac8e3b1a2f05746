"""A simulated room: how a loudspeaker's sound reaches a microphone, for echo tests.

``Room`` is the acoustic path as an impulse response: a delay (distance plus the sound card's
buffers), a direct path attenuated by ``attenuation_db`` and a reverberant tail that decays by
60 dB in ``rt60_s`` (random reflections, seeded, so every run hears the same room). Optional
non-idealities of real hardware: a loudspeaker that saturates (soft clipping above
``saturation``) and a microphone clock that drifts from the speaker's by ``drift_ppm``.

``RoomFilter`` applies it to a stream chunk by chunk (overlap-add: chunk boundaries change
nothing), which is what the PulseAudio rig (``tests.support.echo_rig``) and the benchmark need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assistant.events import SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Room:
    """The path from the loudspeaker to the microphone."""

    delay_ms: float = 40.0
    """Before the direct sound arrives (about 3 ms per metre, plus any buffering simulated)."""
    attenuation_db: float = 6.0
    """Level of the direct sound below what the loudspeaker plays."""
    rt60_s: float = 0.3
    """Reverberation time: the tail falls by 60 dB in this long (a furnished living room)."""
    reverb_db: float = 10.0
    """Level of the first reflections below the direct sound."""
    saturation: float | None = None
    """Soft-clip the loudspeaker at this fraction of full scale (None: a clean speaker)."""
    drift_ppm: float = 0.0
    """The microphone's clock runs this many parts per million fast (+) or slow (-)."""
    seed: int = 7

    def impulse_response(self, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
        """The room's impulse response (float64), delay included."""
        delay = round(self.delay_ms * sample_rate_hz / 1000)
        tail_len = max(1, round(self.rt60_s * sample_rate_hz))
        rng = np.random.default_rng(self.seed)
        t_s = np.arange(tail_len) / sample_rate_hz
        decay = 10 ** (-3.0 * t_s / self.rt60_s)  # -60 dB at rt60_s
        tail = rng.standard_normal(tail_len) * decay
        tail *= 10 ** (-self.reverb_db / 20) / max(1e-9, np.abs(tail[:64]).max())
        response = np.zeros(delay + tail_len)
        response[delay + 8 :] += tail[: tail_len - 8]  # reflections come after the direct path
        response[delay] += 1.0
        return response * 10 ** (-self.attenuation_db / 20)

    def speaker(self, pcm: np.ndarray) -> np.ndarray:
        """What the loudspeaker makes of int16 ``pcm`` (float in [-1, 1])."""
        audio = pcm.astype(np.float64) / 32768.0
        if self.saturation is not None:
            audio = self.saturation * np.tanh(audio / self.saturation)
        return audio


class RoomFilter:
    """A ``Room`` applied to a 16 kHz int16 stream, chunk by chunk, in step with it."""

    def __init__(self, room: Room, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self.room = room
        self._response = room.impulse_response(sample_rate_hz)
        self._tail = np.zeros(len(self._response) - 1)
        self._drift_phase = 0.0
        self._drift_previous = 0.0

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        """The echo of ``pcm`` as the microphone hears it (float, same length; drift aside)."""
        wet = np.convolve(self.room.speaker(pcm), self._response)
        wet[: len(self._tail)] += self._tail
        out, rest = wet[: len(pcm)], wet[len(pcm) :]
        self._tail = np.concatenate([rest, np.zeros(len(self._tail) - len(rest))])
        if self.room.drift_ppm:
            out = self._drift(out)
        return out

    def _drift(self, chunk: np.ndarray) -> np.ndarray:
        """Resample by ``1 + drift_ppm`` with linear interpolation, keeping the phase."""
        step = 1.0 - self.room.drift_ppm * 1e-6
        source = np.concatenate([[self._drift_previous], chunk])
        positions = self._drift_phase + np.arange(0, len(chunk), step)
        positions = positions[positions < len(chunk)]
        self._drift_phase = positions[-1] + step - len(chunk) if len(positions) else 0.0
        self._drift_previous = chunk[-1]
        return np.interp(positions, np.arange(-1, len(chunk)), source)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as clipped int16."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
