"""PCM to the loudspeaker: the ``AudioPlayer`` interface and PortAudio playback."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from assistant.speech.errors import SpeechError


class AudioPlayer(Protocol):
    """Plays PCM; blocking (the ``Speaker`` runs it in a thread) and stoppable from elsewhere."""

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: threading.Event) -> float:
        """Play until done or until ``stop`` is set; return the seconds of audio heard."""
        ...


class SoundDevicePlayer:
    """An output device through PortAudio (``device``: index or name; the default when None)."""

    block_s = 0.05
    """Audio written per step: how soon a stop takes effect."""

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device

    def check(self, sample_rate_hz: int) -> None:
        """Raise ``SpeechError`` unless the device can play mono int16 at ``sample_rate_hz``."""
        problem = self.problem(sample_rate_hz)
        if problem is not None:
            raise SpeechError(
                f"cannot play speech ({problem}); connect a speaker, pick one with "
                "--output-device, or use --no-speak"
            )

    def problem(self, sample_rate_hz: int) -> str | None:
        """Why the device cannot play mono int16 at ``sample_rate_hz``; None when it can."""
        sd = _sounddevice()
        try:
            sd.check_output_settings(
                device=self.device, samplerate=sample_rate_hz, channels=1, dtype="int16"
            )
        except (sd.PortAudioError, ValueError) as exc:
            where = "no default output device" if self.device is None else repr(self.device)
            return f"{where}: {exc}"
        return None

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: threading.Event) -> float:
        """Play ``pcm`` and wait until it has left the speaker (or ``stop`` is set)."""
        sd = _sounddevice()
        try:
            stream = sd.OutputStream(
                device=self.device, samplerate=sample_rate_hz, channels=1, dtype="int16"
            )
        except (sd.PortAudioError, ValueError) as exc:
            where = "the default output device" if self.device is None else repr(self.device)
            raise SpeechError(f"cannot play through {where}: {exc}") from exc
        block = max(1, round(sample_rate_hz * self.block_s))
        written = 0
        try:
            with stream:
                while written < len(pcm) and not stop.is_set():
                    stream.write(pcm[written : written + block])
                    written += len(pcm[written : written + block])
                if stop.is_set():
                    stream.abort()
                    heard = max(0.0, written / sample_rate_hz - float(stream.latency))
                    return min(heard, len(pcm) / sample_rate_hz)
                # stop() returns once the buffered audio has been played.
                stream.stop()
        except sd.PortAudioError as exc:  # e.g. the device went away mid-sentence
            raise SpeechError(f"playing speech failed: {exc}") from None
        return written / sample_rate_hz


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:
        raise SpeechError(
            f"the PortAudio library was not found ({exc}): apt-get install libportaudio2 "
            "or brew install portaudio, or use --no-speak"
        ) from None
    return sounddevice
