"""Reading a long recording a block at a time: never the whole file in memory.

``AudioBlocks`` opens a file path, or the bytes of a file, with libsndfile (WAV, FLAC, OGG,
MP3, ...) and yields 16 kHz mono int16 blocks: channels mixed, other rates resampled by a
streaming resampler. The same checks as ``assistant.audio.io.load_audio`` apply, block by
block: a file that is not audio, holds no samples, or holds non-finite or mis-scaled samples
is an ``AudioError``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.io import (
    ACCEPTED_AUDIO,
    MAX_FLOAT_PEAK,
    AudioError,
    float_to_pcm16,
)
from assistant.events import SAMPLE_RATE_HZ

BLOCK_S = 10.0
"""Seconds of the file read at a time."""


class AudioBlocks:
    """A recording as an iterator of 16 kHz mono int16 blocks; use as a context manager."""

    def __init__(self, source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> None:
        import soundfile as sf

        if isinstance(source, bytes):
            self.name = name or "the audio data"
            if not source:
                raise AudioError(f"{self.name} is empty; expected {ACCEPTED_AUDIO}")
            opened: Any = io.BytesIO(source)
        else:
            path = Path(source)
            self.name = name or f"audio file {path}"
            if path.is_dir():
                raise AudioError(f"{self.name} is a folder, not an audio file")
            if not path.is_file():
                raise AudioError(f"{self.name} does not exist")
            opened = str(path)
        try:
            self._file = sf.SoundFile(opened)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            reason = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
            raise AudioError(
                f"{self.name} is not readable audio ({reason.rstrip('.')}); "
                f"expected {ACCEPTED_AUDIO}"
            ) from None
        self.rate_hz = int(self._file.samplerate)
        if self.rate_hz <= 0:
            self.close()
            raise AudioError(f"{self.name} has an invalid sample rate {self.rate_hz} Hz")

    @property
    def duration_s(self) -> float:
        """Length from the file's header (an estimate for some compressed formats)."""
        return float(self._file.frames) / self.rate_hz

    def __iter__(self) -> Iterator[np.ndarray]:
        resample = None
        if self.rate_hz != SAMPLE_RATE_HZ:
            import soxr

            resample = soxr.ResampleStream(self.rate_hz, SAMPLE_RATE_HZ, 1, dtype="float32")
        block_frames = max(1, int(BLOCK_S * self.rate_hz))
        any_samples = False
        for block in self._file.blocks(block_frames, dtype="float32", always_2d=True):
            if not len(block):
                continue
            any_samples = True
            mono = block.mean(axis=1, dtype=np.float32)
            if not np.isfinite(mono).all():
                raise AudioError(f"{self.name} holds NaN or infinite samples")
            peak = float(np.abs(mono).max())
            if peak > MAX_FLOAT_PEAK:
                raise AudioError(f"float audio must be in [-1, 1]; {self.name} peaks at {peak:g}")
            if resample is not None:
                mono = resample.resample_chunk(mono)
            yield float_to_pcm16(mono)
        if not any_samples:
            raise AudioError(f"{self.name} holds no samples")
        if resample is not None:  # the resampler's delay line holds the last few samples
            tail = resample.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield float_to_pcm16(np.asarray(tail, dtype=np.float32))

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> AudioBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
