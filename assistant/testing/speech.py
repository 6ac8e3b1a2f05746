"""Real synthesized speech for tests, from the ``espeak-ng`` program (Debian: espeak-ng)."""

from __future__ import annotations

import numpy as np

from assistant.audio.io import float_to_pcm16, load_audio
from assistant.events import SAMPLE_RATE_HZ
from assistant.speech.synthesis import EspeakSynthesizer


def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 160) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return mono int16 PCM at 16 kHz.

    The same synthesizer that speaks ``listen``'s replies; ``tts.SpeechError`` if it fails.
    """
    espeak = EspeakSynthesizer(voice, words_per_minute)
    pcm = espeak.synthesize(text)
    return float_to_pcm16(load_audio(pcm, espeak.sample_rate_hz))


SOUNDING_LEVEL = 64
"""A sample above this (about -54 dBFS) is sound; espeak-ng pads its speech with silence."""


def sounding(pcm: np.ndarray, level: int = SOUNDING_LEVEL) -> np.ndarray:
    """``pcm`` from its first to its last sample above ``level`` (the whole of it if none is)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
    return pcm[loud[0] : loud[-1] + 1] if len(loud) else pcm


def write_wav(path: str, pcm: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> str:
    """Write int16 (or float) mono samples as a PCM16 WAV file and return its path."""
    import soundfile as sf

    sf.write(path, pcm, sample_rate_hz, subtype="PCM_16")
    return path
