"""Playback for full duplex: one output stream kept open, every block it plays told to a tap.

An echo canceller needs the far end exactly as the sound card gets it, on the card's clock.
``SoundDevicePlayer`` opens a stream per sentence and writes in blocking steps, so each
sentence starts with a different buffer fill and the delay from hand-over to sound jumps; the
canceller would have to find it again every sentence. ``ContinuousPlayer`` opens the output
once and keeps it running: PortAudio's callback takes the next block of the clip being played,
or silence between clips, and hands every block, silence included, to ``far_end`` at that
moment. The delay from the tap to the loudspeaker is then the device's latency, the same for
the whole session.

Threads: ``play`` blocks its caller (the ``Speaker`` runs it in a thread) until the clip has
been handed over and the device's latency has passed, or until ``stop`` is set. The callback
runs on PortAudio's thread; it copies a block, never waits on anything but a short lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.speech.errors import SpeechError
from assistant.speech.playback import SoundDevicePlayer, _sounddevice

FarEndTap = Callable[[np.ndarray, int], None]
"""Told each block of PCM (mono int16) and its rate the moment the sound card takes it. Called
on PortAudio's thread: it must be quick."""


@dataclass(eq=False)
class _Clip:
    pcm: np.ndarray
    stop: threading.Event
    position: int = 0
    handed_over: threading.Event = field(default_factory=threading.Event)


class ContinuousPlayer(SoundDevicePlayer):
    """An output device kept open between clips (silence in the gaps), each block tapped.

    ``device``: index or name (the default output when None); ``far_end``: the tap.
    ``close()`` closes the stream (``Speaker.aclose`` calls it).
    """

    block_s = 0.02
    """PortAudio's callback block: how soon a stop takes effect, and the tap's step."""

    latency_s = 0.2
    """The device buffer asked for: deep enough that a busy machine never lets it run dry
    (each underrun would shift the sound against the far end the canceller was told)."""

    def __init__(self, device: int | str | None = None, *, far_end: FarEndTap | None = None):
        super().__init__(device)
        self.far_end = far_end
        self._lock = threading.Lock()
        self._clip: _Clip | None = None
        self._stream: Any = None
        self._rate_hz = 0
        self._failure: str | None = None

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: threading.Event) -> float:
        """Play ``pcm`` through the open stream; return the seconds of it heard."""
        stream = self._open(sample_rate_hz)
        clip = _Clip(np.ascontiguousarray(pcm, dtype=np.int16), stop)
        with self._lock:
            self._clip = clip
        try:
            while not clip.handed_over.wait(0.05):
                if stop.is_set():
                    break
                if self._failure is not None or not stream.active:
                    raise SpeechError(f"playing speech failed: {self._failure or 'stream ended'}")
            latency_s = float(stream.latency)
            if not stop.is_set():
                # Handed over is not heard yet: the device still holds its latency's worth.
                stop.wait(latency_s)
        finally:
            with self._lock:
                if self._clip is clip:
                    self._clip = None
        played_s = clip.position / sample_rate_hz
        if stop.is_set():
            return min(max(0.0, played_s - latency_s), len(pcm) / sample_rate_hz)
        return played_s

    def close(self) -> None:
        """Stop and close the output stream (a later ``play`` opens it again)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()

    def _open(self, sample_rate_hz: int) -> Any:
        if self._stream is not None and self._rate_hz == sample_rate_hz and self._stream.active:
            return self._stream
        self.close()
        sd = _sounddevice()
        try:
            stream = sd.OutputStream(
                device=self.device,
                samplerate=sample_rate_hz,
                channels=1,
                dtype="int16",
                blocksize=round(sample_rate_hz * self.block_s),
                latency=self.latency_s,
                callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            where = "the default output device" if self.device is None else repr(self.device)
            raise SpeechError(f"cannot play through {where}: {exc}") from exc
        self._stream, self._rate_hz, self._failure = stream, sample_rate_hz, None
        # Let the device settle into its steady latency before the first words.
        time.sleep(float(stream.latency))
        return stream

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        out = outdata[:, 0]
        out.fill(0)
        with self._lock:
            clip = self._clip
            if clip is not None and not clip.stop.is_set() and not clip.handed_over.is_set():
                piece = clip.pcm[clip.position : clip.position + frames]
                out[: len(piece)] = piece
                clip.position += len(piece)
                if clip.position >= len(clip.pcm):
                    clip.handed_over.set()
        if self.far_end is not None:
            try:
                self.far_end(out.copy(), self._rate_hz)
            except Exception as exc:  # a failing tap must not kill the output stream
                self._failure = f"the echo canceller's tap failed: {exc}"
