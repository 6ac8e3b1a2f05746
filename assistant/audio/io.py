"""Audio input for the model: anything a caller has, as float32 mono 16 kHz samples.

Sources: numpy arrays at any rate (int16 or float, mono or channels-last), ``events.Utterance``,
file paths (WAV, FLAC, MP3, OGG through libsndfile) and the bytes of such files. Every failure
is an ``AudioError`` whose message says what was wrong with which input.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.events import SAMPLE_RATE_HZ, Utterance

if TYPE_CHECKING:
    from mistral_common.protocol.instruct.chunk import AudioChunk

AudioSource = np.ndarray | Utterance | str | os.PathLike[str] | bytes | bytearray
"""What ``load_audio`` accepts."""


ACCEPTED_AUDIO = (
    "WAV, FLAC, OGG (Vorbis or Opus) or MP3 audio: 8- to 32-bit integer or float samples, "
    "any sample rate, mono or more channels"
)
"""What the bytes of an audio file may hold (what libsndfile decodes), for error messages."""


# Lossy decoders and resamplers overshoot 1.0 (a full-scale square wave decodes from MP3 or Ogg
# at a peak near 1.36); int16 samples handed over as floats peak in the hundreds or thousands.
MAX_FLOAT_PEAK = 2.0
"""Largest absolute float sample accepted: above it, the audio is taken to be mis-scaled."""


class AudioError(ValueError):
    """Audio could not be read, or cannot be used: empty, non-finite, mis-scaled, bad rate."""


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16 PCM, rounded and clipped (what every stage sends on)."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


class StreamResampler:
    """Streaming soxr resampling of mono chunks to 16 kHz, keeping the chunks' dtype (int16 or
    float32): chunk boundaries do not change the output, as they would chunk by chunk."""

    def __init__(self, in_rate_hz: int, dtype: str = "int16") -> None:
        import soxr

        self.in_rate_hz = in_rate_hz
        self._dtype = np.dtype(dtype)
        self._stream = soxr.ResampleStream(in_rate_hz, SAMPLE_RATE_HZ, 1, dtype=dtype)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        return np.asarray(self._stream.resample_chunk(chunk), dtype=self._dtype)


def stream_resampler(in_rate_hz: int, dtype: str = "int16") -> StreamResampler | None:
    """A ``StreamResampler`` from ``in_rate_hz``, or None when that already is 16 kHz."""
    return None if in_rate_hz == SAMPLE_RATE_HZ else StreamResampler(in_rate_hz, dtype)


def _to_float_mono(samples: np.ndarray, what: str) -> np.ndarray:
    if samples.size == 0:
        # Before mixing channels: the mean over no samples is NaN, not "empty".
        raise AudioError(f"{what} holds no samples (shape {samples.shape})")
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif samples.dtype == np.int32:
        samples = (samples.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif samples.dtype.kind != "f":
        raise AudioError(f"{what} has unsupported sample type {samples.dtype} (use int16 or float)")
    if samples.ndim == 2:
        # Channels-last is what soundfile and sounddevice produce; a (channels, n) array is
        # recognised by having a handful of rows and many more columns.
        channels_first = samples.shape[0] <= 8 and samples.shape[0] < samples.shape[1]
        samples = samples.mean(axis=0 if channels_first else 1)
    if samples.ndim != 1:
        raise AudioError(f"{what} must be mono or (samples, channels), not shape {samples.shape}")
    return samples.astype(np.float32, copy=False)


def _read_file(data: str | os.PathLike[str] | io.BytesIO, what: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        samples, rate = sf.read(data, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        # libsndfile's own words, without soundfile's "Error opening <the file object>: ".
        reason = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
        raise AudioError(
            f"{what} is not readable audio ({reason.rstrip('.')}); expected {ACCEPTED_AUDIO}"
        ) from None
    return samples.mean(axis=1).astype(np.float32), int(rate)


def load_audio(
    source: AudioSource, sample_rate_hz: int | None = None, *, name: str | None = None
) -> np.ndarray:
    """Return ``source`` as float32 mono samples at 16 kHz.

    ``sample_rate_hz`` is the rate of a numpy array (default 16 kHz); files and bytes carry
    their own rate. Raises ``AudioError`` for unreadable, empty, non-finite or mis-scaled audio
    (float samples beyond ``MAX_FLOAT_PEAK``) and for a sample rate that is not positive.
    ``name`` is what the messages call ``source`` ("the request body"); by default its kind.
    """
    if isinstance(source, Utterance):
        what = name or "utterance"
        samples, rate = _to_float_mono(np.asarray(source.pcm), what), source.sample_rate_hz
    elif isinstance(source, np.ndarray):
        what = name or "audio array"
        samples = _to_float_mono(source, what)
        rate = SAMPLE_RATE_HZ if sample_rate_hz is None else sample_rate_hz
    elif isinstance(source, (bytes, bytearray)):
        what = name or "audio data"
        if not source:
            raise AudioError(f"{what} is empty; expected {ACCEPTED_AUDIO}")
        samples, rate = _read_file(io.BytesIO(bytes(source)), what)
    elif isinstance(source, (str, os.PathLike)):
        what = name or f"audio file {Path(source)}"
        if Path(source).is_dir():
            raise AudioError(f"{what} is a folder, not an audio file")
        if not Path(source).is_file():
            raise AudioError(f"{what} does not exist")
        samples, rate = _read_file(source, what)
    else:
        raise AudioError(f"cannot read audio from a {type(source).__name__}")
    if rate <= 0:
        raise AudioError(f"{what} has an invalid sample rate {rate} Hz (it must be positive)")
    if samples.size == 0:
        raise AudioError(f"{what} holds no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{what} holds NaN or infinite samples")
    peak = float(np.abs(samples).max())
    if peak > MAX_FLOAT_PEAK:
        hint = ": pass int16 samples as an int16 array" if isinstance(source, np.ndarray) else ""
        raise AudioError(f"float audio must be in [-1, 1]; {what} peaks at {peak:g}{hint}")
    if rate != SAMPLE_RATE_HZ:
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE_HZ).astype(np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def audio_chunk(source: AudioSource, sample_rate_hz: int | None = None) -> AudioChunk:
    """A mistral-common ``AudioChunk`` (16 kHz WAV inside) for a user message."""
    from mistral_common.protocol.instruct.chunk import AudioChunk
    from mistral_common.tokens.tokenizers.audio import Audio

    samples = load_audio(source, sample_rate_hz)
    return AudioChunk.from_audio(Audio(samples, SAMPLE_RATE_HZ, format="wav"))
