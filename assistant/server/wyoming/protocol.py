"""Checks on what a Wyoming client sends: refused events, audio formats, text and languages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.audio.io import StreamResampler
from assistant.config import iso_639_1
from assistant.events import SAMPLE_RATE_HZ

MAX_RATE_HZ = 192_000
SAMPLE_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.uint8),
    2: np.dtype("<i2"),
    4: np.dtype("<i4"),
}
"""Sample widths in bytes: 8-bit PCM is unsigned, 16- and 32-bit signed little-endian."""


class RefusedEvent(Exception):
    """A client event that cannot be used; answered with an ``error`` event.

    ``fatal``: the request it belonged to cannot go on, and the connection is closed after the
    error (Home Assistant's clients would otherwise wait for an answer that will not come).
    """

    def __init__(self, code: str, text: str, *, fatal: bool = False) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.fatal = fatal


def require(data: dict[str, Any], key: str, kind: type, event_type: str) -> Any:
    """``data[key]`` if it is a ``kind`` (bool never counts as int); else ``RefusedEvent``."""
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RefusedEvent(
            "invalid_event", f"{event_type} needs '{key}' ({kind.__name__}); it was {value!r}"
        )
    return value


def text_field(data: dict[str, Any], event_type: str, max_chars: int) -> str:
    """The ``text`` of an event, at most ``max_chars`` long."""
    text: str = require(data, "text", str, event_type)
    if len(text) > max_chars:
        raise RefusedEvent(
            "text_too_long", f"{event_type}: text of {len(text)} characters (limit {max_chars})"
        )
    return text


def language_code(value: Any) -> str | None:
    """An ISO 639-1 code from what a client sends (``en``, ``en-US``, ``en_GB``); None: detect."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RefusedEvent("invalid_event", f"language must be a string, not {value!r}")
    code = value.replace("_", "-").split("-", 1)[0].lower()
    try:
        return iso_639_1(code)
    except ValueError:
        raise RefusedEvent(
            "unsupported_language",
            f"language {value!r} is not an ISO 639-1 code (two letters, like 'en' or 'en-US')",
        ) from None


@dataclass(frozen=True)
class PcmFormat:
    """The format of raw PCM audio: rate, sample width in bytes, interleaved channels."""

    rate_hz: int
    width_bytes: int
    channels: int

    @classmethod
    def from_event(cls, data: dict[str, Any], event_type: str) -> PcmFormat:
        """The format an ``audio-start`` or ``audio-chunk`` declares; ``RefusedEvent`` if odd."""
        rate = require(data, "rate", int, event_type)
        width = require(data, "width", int, event_type)
        channels = require(data, "channels", int, event_type)
        if not 0 < rate <= MAX_RATE_HZ:
            raise RefusedEvent("unsupported_audio", f"{event_type}: rate {rate} Hz is not usable")
        if width not in SAMPLE_DTYPES:
            raise RefusedEvent(
                "unsupported_audio", f"{event_type}: width {width} bytes (use 1, 2 or 4)"
            )
        if not 0 < channels <= 8:
            raise RefusedEvent("unsupported_audio", f"{event_type}: {channels} channels")
        return cls(rate, width, channels)

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return self.width_bytes * self.channels

    def describe(self) -> str:
        """``16000 Hz, 2 bytes, 1 channel``."""
        return f"{self.rate_hz} Hz, {self.width_bytes} bytes, {self.channels} channel(s)"


class PcmConverter:
    """Raw PCM chunks of one stream in any ``PcmFormat`` to 16 kHz mono int16 (streaming)."""

    def __init__(self, fmt: PcmFormat) -> None:
        self.format = fmt
        self._resample = StreamResampler(fmt.rate_hz) if fmt.rate_hz != SAMPLE_RATE_HZ else None

    def __call__(self, payload: bytes) -> np.ndarray:
        """One chunk's samples; ``RefusedEvent`` if it does not hold whole frames."""
        fmt = self.format
        if len(payload) % fmt.frame_bytes:
            raise RefusedEvent(
                "invalid_audio",
                f"audio-chunk of {len(payload)} bytes is not whole frames of {fmt.frame_bytes}",
            )
        samples = np.frombuffer(payload, dtype=SAMPLE_DTYPES[fmt.width_bytes])
        if fmt.width_bytes == 1:
            wide = (samples.astype(np.int32) - 128) << 8
        elif fmt.width_bytes == 4:
            wide = samples.astype(np.int64) >> 16
        else:
            wide = samples.astype(np.int32)
        mono = wide.reshape(-1, fmt.channels).mean(axis=1) if fmt.channels > 1 else wide
        pcm = np.clip(np.round(mono), -32768, 32767).astype(np.int16)
        return self._resample(pcm) if self._resample is not None else pcm
