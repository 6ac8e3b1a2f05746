"""Text to PCM: the ``Synthesizer`` interface and the offline espeak-ng synthesizer."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Protocol

import numpy as np

from assistant.speech.errors import SpeechError

ESPEAK_PACKAGES = "apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS)"


class Synthesizer(Protocol):
    """Text to mono int16 PCM; blocking (the ``Speaker`` runs it in a thread)."""

    sample_rate_hz: int

    def synthesize(self, text: str) -> np.ndarray: ...


class EspeakSynthesizer:
    """The ``espeak-ng`` program: small, offline, many languages (``espeak-ng --voices``)."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 175) -> None:
        executable = shutil.which("espeak-ng")
        if executable is None:
            raise SpeechError(f"espeak-ng is not installed: {ESPEAK_PACKAGES}, or use --no-speak")
        if not 80 <= words_per_minute <= 450:
            raise ValueError(f"words_per_minute must be 80 to 450, not {words_per_minute}")
        self.executable = executable
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.sample_rate_hz = 22_050
        """espeak-ng's native output rate; updated from the first WAV it writes."""

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; return mono int16 PCM at ``sample_rate_hz``."""
        import soundfile as sf

        command = [self.executable, "-v", self.voice, "-s", str(self.words_per_minute)]
        try:
            done = subprocess.run(
                [*command, "--stdout", "--", text], capture_output=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"espeak-ng (voice {self.voice!r}) failed: {exc}") from None
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise SpeechError(f"espeak-ng (voice {self.voice!r}) failed: {message}")
        try:
            pcm, rate_hz = sf.read(io.BytesIO(done.stdout), dtype="int16", always_2d=True)
        except sf.SoundFileError as exc:
            raise SpeechError(f"espeak-ng wrote no readable WAV: {exc}") from None
        self.sample_rate_hz = rate_hz
        return np.ascontiguousarray(pcm[:, 0])
