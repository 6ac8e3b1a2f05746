"""Acoustic echo cancellation: the assistant's own voice taken out of the microphone.

On open speakers the microphone hears the reply being played. An ``EchoCanceller`` is told
what the speaker plays (``far_end``: the PCM exactly as it is handed to the sound card, at
that moment) and subtracts its echo from each microphone frame (``process``) before the VAD
sees it, so the user can talk over the reply (barge-in) without the reply interrupting itself.

``WebRtcEchoCanceller`` is WebRTC's AEC3 (the echo canceller of Chrome and most conferencing
software) through LiveKit's ``livekit.rtc.AudioProcessingModule``: it estimates the delay
between the far end and its echo by itself and adapts to the room. Two facts shape this
wrapper: AEC3 takes int16 frames of exactly 10 ms (or whole multiples), and any other size
aborts the whole process from native code (SIGABRT, no exception) — so every size is checked
here first; and its far end must follow the microphone's clock (see ``WebRtcEchoCanceller``).

Threads: ``far_end`` is called on the playback thread, ``process`` on the event loop; one lock
keeps the native calls apart (each takes microseconds).
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Protocol

import numpy as np

from assistant.audio.io import StreamResampler
from assistant.events import SAMPLE_RATE_HZ

AEC_FRAME_SAMPLES = SAMPLE_RATE_HZ // 100
"""AEC3 works on 10 ms frames: 160 samples at 16 kHz."""

MAX_FAR_END_QUEUE_FRAMES = 200
"""Far-end frames (2 s) waiting for the microphone to catch up; older ones are dropped and
counted: a player filling a buffer runs ahead by its latency, never by seconds."""

WARM_UP_FAR_END_S = 5.0
"""Seconds of sound played before the canceller counts as adapted (``ready``): in the first
seconds AEC3 still lets bursts of loud echo through (``benchmarks/echo.py``)."""

SOUNDING_RMS = 100.0
"""int16 RMS above which a far-end frame counts as sound for the warm-up."""

LIVEKIT_PACKAGE = "pip install 'livekit>=1.0,<2'"


class EchoCancellerUnavailable(RuntimeError):
    """The echo canceller cannot run here; the message says why and what to do."""


class EchoCanceller(Protocol):
    """Removes the loudspeaker's sound (the far end) from the microphone (the near end)."""

    def far_end(self, pcm: np.ndarray, sample_rate_hz: int) -> None:
        """The PCM just handed to the sound card (mono int16, any length); any thread."""
        ...

    def process(self, frame: np.ndarray) -> np.ndarray:
        """One 16 kHz mono int16 microphone frame (a multiple of 10 ms) with the echo removed."""
        ...

    @property
    def ready(self) -> bool:
        """Whether it has adapted to the room (until then the agent stays half-duplex)."""
        ...


def check_near_frame(frame: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``frame`` is 1-D int16 of whole 10 ms blocks at 16 kHz.

    Called before every native call: the native code aborts the process on anything else.
    """
    if frame.ndim != 1 or frame.dtype != np.int16:
        raise ValueError(
            f"the echo canceller takes 1-D int16 frames, not {frame.dtype} of shape {frame.shape}"
        )
    if len(frame) == 0 or len(frame) % AEC_FRAME_SAMPLES:
        raise ValueError(
            f"the echo canceller takes frames of whole 10 ms ({AEC_FRAME_SAMPLES} samples at "
            f"{SAMPLE_RATE_HZ} Hz), not {len(frame)} samples"
        )


def _mono_int16(pcm: np.ndarray) -> np.ndarray:
    if pcm.ndim == 2:
        pcm = pcm.mean(axis=1) if pcm.dtype.kind == "f" else pcm.astype(np.int32).mean(axis=1)
        pcm = pcm.astype(np.int16) if pcm.dtype.kind != "f" else pcm
    if pcm.ndim != 1:
        raise ValueError(f"far-end audio must be mono or (samples, channels), not {pcm.shape}")
    if pcm.dtype.kind == "f":
        return np.clip(np.round(pcm * 32767.0), -32768, 32767).astype(np.int16)
    if pcm.dtype != np.int16:
        raise ValueError(f"far-end audio must be int16 or float, not {pcm.dtype}")
    return pcm


class WebRtcEchoCanceller:
    """WebRTC AEC3 through ``livekit.rtc.AudioProcessingModule`` (works offline, no server).

    The far end reaches AEC3 the moment it is handed over (``ContinuousPlayer`` hands over
    every block, silence included, on the sound card's clock). ``pace_far_end``: queue it and
    feed one 10 ms frame per microphone frame instead (for a player that hands audio over in
    bursts). Either way, while no far end comes, silence is fed in step with the microphone.
    ``high_pass_filter``: also remove rumble below ~80 Hz (WebRTC's own recommendation with
    AEC3; speech loses nothing).
    """

    def __init__(self, *, pace_far_end: bool = False, high_pass_filter: bool = True) -> None:
        try:
            from livekit import rtc
        except ImportError as exc:
            raise EchoCancellerUnavailable(
                f"echo cancellation needs the livekit package ({exc}): {LIVEKIT_PACKAGE}"
            ) from None
        except OSError as exc:  # the package is there but its native library does not load
            raise EchoCancellerUnavailable(
                f"echo cancellation cannot load livekit's native library: {exc}"
            ) from None
        self._rtc: Any = rtc
        self._apm: Any = rtc.AudioProcessingModule(
            echo_cancellation=True, high_pass_filter=high_pass_filter
        )
        self._pace = pace_far_end
        self._lock = threading.Lock()
        self._resampler: StreamResampler | None = None
        self._far_rate_hz = SAMPLE_RATE_HZ
        self._far_pending = np.zeros(0, dtype=np.int16)
        self._far_queue: collections.deque[np.ndarray] = collections.deque()
        self._lead_frames = 0  # far-end frames fed minus microphone frames processed
        self.dropped_far_frames = 0
        """10 ms far-end frames dropped because they ran too far ahead of the microphone."""
        self.far_frames = 0
        """10 ms far-end frames given to AEC3 (silence fed while nothing plays included)."""
        self.near_frames = 0
        """10 ms microphone frames processed."""
        self._sounding_far_frames = 0

    @property
    def ready(self) -> bool:
        """Whether ``WARM_UP_FAR_END_S`` of sound have been played (and so adapted to)."""
        return self._sounding_far_frames >= WARM_UP_FAR_END_S * 100

    def far_end(self, pcm: np.ndarray, sample_rate_hz: int) -> None:
        """Take the PCM just handed to the sound card (resampled to 16 kHz, cut in 10 ms)."""
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, not {sample_rate_hz}")
        mono = _mono_int16(np.asarray(pcm))
        with self._lock:
            if sample_rate_hz != self._far_rate_hz:
                self._far_rate_hz = sample_rate_hz
                self._resampler = None
            if sample_rate_hz != SAMPLE_RATE_HZ and self._resampler is None:
                self._resampler = StreamResampler(sample_rate_hz, "int16")
            at_16k = self._resampler(mono) if self._resampler is not None else mono
            pending = np.concatenate([self._far_pending, at_16k])
            whole = len(pending) - len(pending) % AEC_FRAME_SAMPLES
            self._far_pending = pending[whole:]
            for offset in range(0, whole, AEC_FRAME_SAMPLES):
                if len(self._far_queue) >= MAX_FAR_END_QUEUE_FRAMES:
                    self._far_queue.popleft()
                    self.dropped_far_frames += 1
                self._far_queue.append(pending[offset : offset + AEC_FRAME_SAMPLES])
            if not self._pace:
                while self._far_queue:
                    self._reverse(self._far_queue.popleft())

    def process(self, frame: np.ndarray) -> np.ndarray:
        """The microphone frame with the echo of the far end removed (a new array)."""
        check_near_frame(frame)
        out = np.array(frame, dtype=np.int16, copy=True)
        with self._lock:
            for offset in range(0, len(out), AEC_FRAME_SAMPLES):
                if self._lead_frames <= 0:
                    # The next far-end frame, or silence: nothing is playing.
                    far = self._far_queue.popleft() if self._far_queue else None
                    self._reverse(np.zeros(AEC_FRAME_SAMPLES, np.int16) if far is None else far)
                block = out[offset : offset + AEC_FRAME_SAMPLES]
                audio = self._frame(block)
                self._apm.process_stream(audio)
                block[:] = np.frombuffer(audio.data, dtype=np.int16)
                self._lead_frames -= 1
                self.near_frames += 1
        return out

    def _frame(self, block: np.ndarray) -> Any:
        check_near_frame(block)  # the native code aborts the process on any other size
        return self._rtc.AudioFrame(
            bytearray(block.tobytes()), SAMPLE_RATE_HZ, 1, AEC_FRAME_SAMPLES
        )

    def _reverse(self, block: np.ndarray) -> None:
        """Give AEC3 one 10 ms far-end frame (the lock is held)."""
        self._apm.process_reverse_stream(self._frame(block))
        self._lead_frames += 1
        self.far_frames += 1
        if np.sqrt(np.mean(block.astype(np.float64) ** 2)) > SOUNDING_RMS:
            self._sounding_far_frames += 1
