"""Open speakers simulated in stream time: a reply played, its echo and the user at the microphone.

``simulate_call`` runs an ``EchoCanceller`` the way ``listen`` does, tick by tick (10 ms), with
no sound card: the output device's callback takes a block every ``block_ms`` (the reply, or
silence before and after it) and hands it to the far end at that moment, like
``ContinuousPlayer``; the block sounds ``latency_ms`` later into a ``Room``; the microphone
delivers frames of the room's sound plus the user's voice. Everything happens in stream time,
so the results are the same on a busy machine. The echo tests and ``benchmarks/echo.py`` share
it.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np

from assistant.audio.echo import EchoCanceller
from assistant.audio.io import float_to_pcm16, load_audio
from assistant.events import SAMPLE_RATE_HZ
from tests.support.room import Room, RoomFilter, to_pcm16

TICK_MS = 10


@dataclass(frozen=True)
class Playback:
    """How the output device and the microphone run."""

    block_ms: int = 20
    """The output callback's block (``ContinuousPlayer.block_s``)."""
    latency_ms: int = 60
    """From the callback taking a block to the block sounding."""
    capture_frame_ms: int = 20
    """Microphone frame (the VAD's ``frame_ms``)."""


@dataclass
class CallResult:
    """What the microphone heard and what the canceller made of it, all 16 kHz."""

    echo: np.ndarray
    """The echo alone at the microphone (float, int16 scale)."""
    user: np.ndarray
    """The user's voice alone at the microphone (float, int16 scale)."""
    mic: np.ndarray
    """What the microphone delivered (int16): echo plus user."""
    out: np.ndarray
    """The canceller's output (int16); the microphone itself when no canceller ran."""
    busy_s: float = 0.0
    """Seconds spent inside the canceller (far end and microphone frames)."""
    ready_at_s: float | None = None
    """Stream time at which the canceller first said it was ready."""
    frames: int = field(default=0)


def simulate_call(
    canceller: EchoCanceller | None,
    reply: np.ndarray,
    reply_rate_hz: int,
    room: Room,
    *,
    user: np.ndarray | None = None,
    user_at_s: float = 0.0,
    reply_at_s: float = 0.5,
    total_s: float | None = None,
    playback: Playback | None = None,
) -> CallResult:
    """Play ``reply`` (int16 at ``reply_rate_hz``) from ``reply_at_s``; ``user`` (16 kHz int16)
    speaks from ``user_at_s``; return the microphone and the canceller's output."""
    playback = playback or Playback()
    # What the air carries: the reply at the microphone's rate (the DAC and ADC in between).
    reply_16k = float_to_pcm16(load_audio(reply, reply_rate_hz))
    if total_s is None:
        total_s = reply_at_s + len(reply_16k) / SAMPLE_RATE_HZ + room.rt60_s + 1.5
    ticks = round(total_s * 1000 / TICK_MS)
    tick_16k = SAMPLE_RATE_HZ * TICK_MS // 1000
    ticks_per_block = playback.block_ms // TICK_MS
    block_far = reply_rate_hz * playback.block_ms // 1000
    room_filter = RoomFilter(room)
    # The reply at both rates, placed on the timeline; silence around it.
    start_far = round(reply_at_s * reply_rate_hz)
    far_track = np.zeros(round(total_s * reply_rate_hz) + block_far, dtype=np.int16)
    far_track[start_far : start_far + len(reply)] = reply[: len(far_track) - start_far]
    sound = np.zeros(ticks * tick_16k + len(reply_16k), dtype=np.int16)
    start_16k = round(reply_at_s * SAMPLE_RATE_HZ)
    sound[start_16k : start_16k + len(reply_16k)] = reply_16k
    user_track = np.zeros(ticks * tick_16k + SAMPLE_RATE_HZ)
    if user is not None:
        at = round(user_at_s * SAMPLE_RATE_HZ)
        part = user[: max(0, len(user_track) - at)].astype(np.float64)
        user_track[at : at + len(part)] = part

    latency_ticks = playback.latency_ms // TICK_MS
    in_flight: collections.deque[np.ndarray] = collections.deque(
        np.zeros(tick_16k, dtype=np.int16) for _ in range(latency_ticks)
    )
    capture = SAMPLE_RATE_HZ * playback.capture_frame_ms // 1000
    echo_parts: list[np.ndarray] = []
    mic_frames: list[np.ndarray] = []
    out_frames: list[np.ndarray] = []
    pending = np.zeros(0)
    busy_s = 0.0
    ready_at_s: float | None = None
    far_pos = 0
    for tick in range(ticks):
        if tick % ticks_per_block == 0 and canceller is not None:
            # The output callback takes the next block: the tap fires now.
            began = time.perf_counter()
            canceller.far_end(far_track[far_pos : far_pos + block_far], reply_rate_hz)
            busy_s += time.perf_counter() - began
            far_pos += block_far
        # This tick's 10 ms enters the device; what entered latency_ms ago sounds now.
        in_flight.append(sound[tick * tick_16k : (tick + 1) * tick_16k])
        echo = room_filter(in_flight.popleft()) * 32768.0
        echo_parts.append(echo)
        pending = np.concatenate([pending, echo])
        while len(pending) >= capture:
            at = len(mic_frames) * capture
            frame = to_pcm16((pending[:capture] + user_track[at : at + capture]) / 32768.0)
            pending = pending[capture:]
            mic_frames.append(frame)
            if canceller is None:
                out_frames.append(frame)
                continue
            began = time.perf_counter()
            out_frames.append(canceller.process(frame))
            busy_s += time.perf_counter() - began
            if ready_at_s is None and canceller.ready:
                ready_at_s = len(mic_frames) * capture / SAMPLE_RATE_HZ
    mic = np.concatenate(mic_frames)
    return CallResult(
        echo=_fit(np.concatenate(echo_parts), len(mic)),
        user=_fit(user_track, len(mic)),
        mic=mic,
        out=np.concatenate(out_frames),
        busy_s=busy_s,
        ready_at_s=ready_at_s,
        frames=len(mic_frames),
    )


def _fit(track: np.ndarray, length: int) -> np.ndarray:
    return track[:length] if len(track) >= length else np.pad(track, (0, length - len(track)))


def erle_db(echo: np.ndarray, out: np.ndarray, start_s: float, end_s: float) -> float:
    """Echo return loss enhancement over a stretch with echo only: how much quieter it got."""
    a, b = round(start_s * SAMPLE_RATE_HZ), round(end_s * SAMPLE_RATE_HZ)
    echo_power = float(np.mean(echo[a:b].astype(np.float64) ** 2))
    out_power = float(np.mean(out[a:b].astype(np.float64) ** 2))
    return float(10 * np.log10(max(echo_power, 1e-9) / max(out_power, 1e-9)))
