"""The client's input audio at 16 kHz: the uncommitted buffer of manual turns and the clock.

OpenAI's ``audio_start_ms`` / ``audio_end_ms`` count the audio received since the session
started; ``stream_ms`` is that clock. Without server VAD the appended audio waits here, bounded,
until the client commits or clears it.
"""

from __future__ import annotations

import numpy as np

from assistant.audio.io import StreamResampler, stream_resampler
from assistant.events import SAMPLE_RATE_HZ
from assistant.server.realtime.protocol import ProtocolError

MIN_COMMIT_MS = 100
"""A manual commit needs at least this much audio (as OpenAI's server requires)."""


class InputAudioBuffer:
    """Appended audio, resampled to 16 kHz, and the uncommitted part of it."""

    def __init__(self, input_rate_hz: int, max_buffered_audio_s: float) -> None:
        self.resampler: StreamResampler | None = stream_resampler(input_rate_hz)
        """From the session's input rate to 16 kHz (None when that is 16 kHz already)."""
        self._max_samples = round(max_buffered_audio_s * SAMPLE_RATE_HZ)
        self._chunks: list[np.ndarray] = []
        self._held_samples = 0
        self._stream_samples = 0

    @property
    def stream_ms(self) -> int:
        """Milliseconds of audio received since the session started."""
        return self._stream_samples * 1000 // SAMPLE_RATE_HZ

    @property
    def held_samples(self) -> int:
        """Samples waiting for a commit."""
        return self._held_samples

    def to_16k(self, pcm: np.ndarray) -> np.ndarray:
        """One appended chunk at 16 kHz (the resampler keeps its state across chunks)."""
        return pcm if self.resampler is None else self.resampler(pcm)

    def advance(self, samples: int) -> None:
        """Count audio that went to the server VAD instead of the buffer."""
        self._stream_samples += samples

    def hold(self, pcm: np.ndarray, event_id: str | None) -> None:
        """Keep ``pcm`` for a manual commit; refuse it (unchanged) beyond the limit."""
        if self._held_samples + len(pcm) > self._max_samples:
            limit_s = self._max_samples / SAMPLE_RATE_HZ
            raise ProtocolError(
                "input_audio_buffer_full",
                f"the input audio buffer holds at most {limit_s:g} s: commit or clear it; "
                "this chunk was not added",
                event_id=event_id,
                param="audio",
            )
        self.put_back(pcm)
        self._stream_samples += len(pcm)

    def put_back(self, pcm: np.ndarray) -> None:
        """Keep audio already counted on the clock (an utterance the VAD let go of)."""
        self._chunks.append(pcm)
        self._held_samples += len(pcm)

    def committable(self, event_id: str | None) -> np.ndarray:
        """The held audio, if there is enough for a commit; it stays held until ``clear``."""
        if self._held_samples * 1000 < MIN_COMMIT_MS * SAMPLE_RATE_HZ:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, "
                f"have {self._held_samples * 1000 // SAMPLE_RATE_HZ} ms",
                event_id=event_id,
            )
        return np.concatenate(self._chunks)

    def clear(self) -> None:
        """Forget the held audio (the clock goes on)."""
        self._chunks, self._held_samples = [], 0
