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
import logging
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
"""Seconds of sound played before the canceller may count as adapted (``ready``): in the first
seconds AEC3 still lets bursts of loud echo through (``benchmarks/echo.py``)."""

ADAPTED_ERLE_DB = 30.0
"""After the warm-up, the canceller is ``ready`` once the echo it was given has come out at
least this much quieter (echo return loss enhancement) over ``ADAPTED_CHECKS`` stretches in a
row. In a stream-time simulation of the test room AEC3 is at 44-76 dB once adapted, and falls
to 10-22 dB for a second 4.5-6 s into the first reply, as a time-only warm-up ran out."""

ADAPTED_CHECK_FRAMES = 50
"""10 ms microphone frames in one stretch checked for ``ADAPTED_ERLE_DB`` (0.5 s), counted
only while echo can be arriving (``ECHO_TAIL_FRAMES`` after sound was played)."""

ADAPTED_CHECKS = 3
"""Stretches in a row that must pass: 1.5 s of echo handled well after the warm-up."""

ECHO_TAIL_FRAMES = 50
"""Microphone frames after the last sounding far-end frame in which its echo can still arrive
(0.5 s: the room's delay and reverberation, and the sound card's buffers)."""

NO_ECHO_RMS = 150.0
"""int16 RMS of the microphone (before cancelling) below which a stretch had no echo worth
cancelling (headphones, a quiet speaker far away): it passes whatever its ERLE."""

WARM_UP_LIMIT_S = 15.0
"""Seconds of sound after which the canceller is ``ready`` even if the check never passed (a
noisy room where ERLE cannot be measured): the agent does not stay half-duplex for good."""

SOUNDING_RMS = 100.0
"""int16 RMS above which a far-end frame counts as sound for the warm-up."""

LIVEKIT_PACKAGE = "pip install 'livekit>=1.0,<2'"

log = logging.getLogger(__name__)


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
        self._since_sounding = ECHO_TAIL_FRAMES + 1  # far-end frames since the last sounding one
        self._energy_in = self._energy_out = 0.0  # microphone energy of this stretch
        self._stretch_frames = 0
        self._checks_passed = 0
        self._ready = False
        self.ready_erle_db: float | None = None
        """The ERLE of the last stretch checked when it became ready (None: not by the check)."""

    @property
    def ready(self) -> bool:
        """Whether it has adapted to the room: after ``WARM_UP_FAR_END_S`` of sound, once
        ``ADAPTED_CHECKS`` stretches in a row had their echo ``ADAPTED_ERLE_DB`` quieter (or no
        echo to speak of); at the latest after ``WARM_UP_LIMIT_S`` of sound. Stays ready."""
        return self._ready

    @property
    def sound_played_s(self) -> float:
        """Seconds of sound given as far end so far (silence not counted)."""
        return self._sounding_far_frames / 100

    def _check_adaptation(self, near: np.ndarray, cleaned: np.ndarray) -> None:
        """Count one 10 ms frame towards the current stretch (the lock is held)."""
        if self._ready or self._since_sounding > ECHO_TAIL_FRAMES:
            return
        if self._sounding_far_frames <= WARM_UP_FAR_END_S * 100:
            return  # only stretches after the warm-up count
        self._energy_in += float(np.sum(near.astype(np.float64) ** 2))
        self._energy_out += float(np.sum(cleaned.astype(np.float64) ** 2))
        self._stretch_frames += 1
        if self._stretch_frames < ADAPTED_CHECK_FRAMES:
            return
        energy_in, energy_out, frames = self._energy_in, self._energy_out, self._stretch_frames
        self._energy_in = self._energy_out = 0.0
        self._stretch_frames = 0
        erle_db = 10 * np.log10(max(energy_in, 1.0) / max(energy_out, 1.0))
        quiet = np.sqrt(energy_in / (frames * AEC_FRAME_SAMPLES)) < NO_ECHO_RMS
        self._checks_passed = self._checks_passed + 1 if erle_db >= ADAPTED_ERLE_DB or quiet else 0
        if self._checks_passed >= ADAPTED_CHECKS:
            self._ready = True
            self.ready_erle_db = float(erle_db)
            log.info(
                "echo canceller adapted: full duplex after %.1f s of sound (echo %.0f dB quieter)",
                self.sound_played_s, erle_db,
            )  # fmt: skip

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
                near = block.copy()
                audio = self._frame(block)
                self._apm.process_stream(audio)
                block[:] = np.frombuffer(audio.data, dtype=np.int16)
                self._check_adaptation(near, block)
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
            self._since_sounding = 0
        else:
            self._since_sounding += 1
        if not self._ready and self._sounding_far_frames >= WARM_UP_LIMIT_S * 100:
            self._ready = True
            log.info(
                "echo canceller: full duplex after %.1f s of sound (its adaptation never "
                "measured %.0f dB over %d stretches in a row)",
                self.sound_played_s, ADAPTED_ERLE_DB, ADAPTED_CHECKS,
            )  # fmt: skip
