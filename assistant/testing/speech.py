"""Real synthesized speech for tests, from the ``espeak-ng`` program (Debian: espeak-ng)."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np

from assistant.events import SAMPLE_RATE_HZ


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


def synthesize(
    text: str,
    voice: str = "en-us",
    words_per_minute: int = 160,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return mono int16 PCM at ``sample_rate_hz``."""
    import soundfile as sf
    import soxr

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechSynthesisError("espeak-ng is not installed (apt-get install espeak-ng)")
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise SpeechSynthesisError(f"espeak-ng failed: {proc.stderr.decode(errors='replace')}")
    # espeak-ng writes a WAV whose size fields say "streaming"; soundfile reads it anyway.
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != sample_rate_hz:
        mono = soxr.resample(mono, rate, sample_rate_hz)
    return np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)


def write_wav(path: str, pcm: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> str:
    """Write int16 (or float) mono samples as a PCM16 WAV file and return its path."""
    import soundfile as sf

    sf.write(path, pcm, sample_rate_hz, subtype="PCM_16")
    return path
