"""Offline speech synthesizers packaged in Debian, their voices, and which voices are held out.

Three synthesizers: ``espeak-ng`` (formant synthesis; 7 English accents x ~100 voice variants),
``flite`` (5 built-in voices) and ``festival`` (two diphone voices and one HTS voice from the
``festvox-*`` packages). Voices are split once: the held-out benchmark speaks only with voices
that training never heard (espeak-ng variants kept apart, flite ``rms``, festival ``ked``).
Speaking rates and pitch shifts are split too: training uses one grid, the benchmark values
in between.

Install: ``apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k
festvox-us-slt-hts sox``.
"""

from __future__ import annotations

import ctypes
import io
import os
import random
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE_HZ = 16000
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip
ESPEAK_VARIANTS_DIR = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v")
FLITE_VOICES = {"train": ("kal", "kal16", "awb", "slt"), "heldout": ("rms",)}
FESTIVAL_VOICES = {
    "train": ("kal_diphone", "cmu_us_slt_arctic_hts"),
    "heldout": ("ked_diphone",),
}
VOICE_SPLIT_SEED = 1515
HELD_OUT_VARIANT_FRACTION = 0.2

RATE_GRID = {"train": (0.8, 0.9, 1.0, 1.1, 1.2, 1.3), "heldout": (0.85, 0.95, 1.05, 1.15)}
"""Speaking-rate factors (1.0 = the voice's own rate; espeak-ng: x 165 words per minute)."""
PITCH_GRID = {
    "train": (-300, -200, -100, 0, 0, 100, 200, 300),
    "heldout": (-250, -150, -50, 50, 150, 250),
}
"""Pitch shifts in cents (sox ``pitch``: moves formants too, like a different vocal tract)."""


class SynthesisError(RuntimeError):
    """A synthesizer failed or is missing."""


@dataclass(frozen=True)
class Voice:
    """One voice of one synthesizer."""

    synth: str
    """``espeak``, ``flite`` or ``festival``."""
    name: str
    """espeak-ng ``accent+variant``, flite voice name, festival voice name."""

    @property
    def id(self) -> str:
        """``synth:name``."""
        return f"{self.synth}:{self.name}"


def espeak_variants() -> list[str]:
    """Every espeak-ng voice variant installed (m1, f3, klatt, whisper, ...)."""
    if not ESPEAK_VARIANTS_DIR.is_dir():
        raise SynthesisError("espeak-ng-data voice variants not found: apt-get install espeak-ng")
    return sorted(p.name for p in ESPEAK_VARIANTS_DIR.iterdir() if p.is_file())


def variant_family(variant: str) -> str:
    """Variants of one kind share a family: ``klatt3`` -> ``klatt``, ``whisperf`` -> ``whisper``."""
    family = variant.rstrip("0123456789")
    return "whisper" if family == "whisperf" else family


def split_variants(variants: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(kept, taken)``: about ``fraction`` of the variants taken, never a whole family of
    several (so every kind of voice, whispering say, stays in the kept part)."""
    rng = random.Random(seed)
    families: dict[str, list[str]] = {}
    for v in sorted(variants):
        families.setdefault(variant_family(v), []).append(v)
    taken: list[str] = []
    singles = []
    for members in families.values():
        if len(members) == 1:
            singles += members
            continue
        rng.shuffle(members)
        taken += members[: min(len(members) - 1, max(1, round(len(members) * fraction)))]
    rng.shuffle(singles)
    taken += singles[: round(len(singles) * fraction)]
    kept = [v for v in variants if v not in taken]
    return sorted(kept), sorted(taken)


def _variant_split() -> dict[str, list[str]]:
    train, held = split_variants(espeak_variants(), HELD_OUT_VARIANT_FRACTION, VOICE_SPLIT_SEED)
    return {"heldout": held, "train": train}


def voices(part: str) -> dict[str, list[Voice]]:
    """The voices of ``part`` (``train`` or ``heldout``), by synthesizer."""
    part = "heldout" if part == "heldout" else "train"
    variants = _variant_split()[part]
    return {
        "espeak": [Voice("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in variants],
        "flite": [Voice("flite", v) for v in FLITE_VOICES[part]],
        "festival": [Voice("festival", v) for v in FESTIVAL_VOICES[part]],
    }


def _read_wav(data: bytes | str) -> np.ndarray:
    """Mono float32 at 16 kHz from WAV bytes or a path."""
    import soundfile as sf
    import soxr

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    samples, rate = sf.read(source, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        samples = soxr.resample(samples, rate, SAMPLE_RATE_HZ)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _run(command: list[str], what: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, check=False, timeout=120)
    except FileNotFoundError:
        raise SynthesisError(f"{command[0]} is not installed (see training/voices.py)") from None
    if done.returncode != 0:
        raise SynthesisError(f"{what} failed: {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout


Words = list[tuple[int, float]]
"""Word timings: (index of the word in the text's words, start in seconds)."""


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_ESPEAK_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


class _Espeak:
    """libespeak-ng in synchronous mode: samples and word events (where each word starts)."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError:
            raise SynthesisError(
                "libespeak-ng is not installed: apt-get install espeak-ng"
            ) from None
        self.rate_hz = self.lib.espeak_Initialize(2, 500, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int]] = []
        self._callback = _ESPEAK_CALLBACK(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == 1:  # espeakEVENT_WORD
                self._words.append((events[i].text_position, events[i].sample))
            i += 1
        return 0

    def say(
        self, text: str, voice: str, wpm: int, pitch: int
    ) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """Samples at ``rate_hz`` and (character position, start in s) of each word event."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SynthesisError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(1, wpm, 0)  # espeakRATE
        self.lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
        self._chunks, self._words = [], []
        data = text.encode("utf-8")
        if self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None) != 0:
            raise SynthesisError(f"espeak-ng failed on {text!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(1, np.int16)
        return samples, [(pos - 1, sample / self.rate_hz) for pos, sample in self._words]


_espeak_lib: _Espeak | None = None


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character positions of the words of ``text`` (letters, digits, ')."""
    return [(m.start(), m.end()) for m in re.finditer(r"[\w']+", text)]


def espeak(text: str, voice: str, rate: float, pitch: int) -> tuple[np.ndarray, Words]:
    """espeak-ng at ``rate`` x 165 words per minute and pitch 0..99; with word timings."""
    import soxr

    global _espeak_lib
    if _espeak_lib is None:
        _espeak_lib = _Espeak()
    # The library wants a voice file name: en-gb is the file "en" (what the CLI falls back to).
    name = "en+" + voice[len("en-gb+") :] if voice.startswith("en-gb+") else voice
    pcm, events = _espeak_lib.say(text, name, round(165 * rate), pitch)
    samples = soxr.resample(pcm.astype(np.float32) / 32768.0, _espeak_lib.rate_hz, SAMPLE_RATE_HZ)
    spans = word_spans(text)
    words = []
    for position, start_s in events:
        for index, (a, b) in enumerate(spans):
            if a <= position < b:
                words.append((index, start_s))
                break
    return np.ascontiguousarray(samples, dtype=np.float32), words


def flite(text: str, voice: str, rate: float) -> np.ndarray:
    """flite: ``rate`` > 1 speaks faster."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.wav")
        _run(
            ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / rate:.3f}", "-t", text,
             "-o", out],
            f"flite {voice}",
        )  # fmt: skip
        return _read_wav(out)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_batch(items: list[tuple[str, str, float]]) -> list[tuple[np.ndarray, Words]]:
    """Festival for many ``(text, voice, rate)`` at once (one process: startup is slow), with
    each word's start (the end of the word before it)."""
    if not items:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        current = None
        for i, (text, voice, rate) in enumerate(items):
            if voice != current:
                lines.append(f"(voice_{voice})")
                current = voice
            lines.append(f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})")
            out = _scheme_string(os.path.join(tmp, f"{i}.wav"))
            times = _scheme_string(os.path.join(tmp, f"{i}.txt"))
            lines.append(f"(set! u (utt.synth (Utterance Text {_scheme_string(text)})))")
            lines.append(f"(utt.save.wave u {out} 'riff)")
            lines.append(
                f'(set! fd (fopen {times} "w"))'
                '(mapcar (lambda (w) (format fd "%s %f\\n" (item.name w) (item.feat w "word_end")))'
                " (utt.relation.items u 'Word))(fclose fd)"
            )
        script = os.path.join(tmp, "batch.scm")
        Path(script).write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run(["festival", "--batch", script], "festival")
        out_items = []
        for i, (text, _, _) in enumerate(items):
            samples = _read_wav(os.path.join(tmp, f"{i}.wav"))
            ends = [float(line.split()[-1]) for line in
                    Path(tmp, f"{i}.txt").read_text().splitlines() if line.strip()]  # fmt: skip
            words: Words = []
            if len(ends) == len(word_spans(text)):
                first = _first_sound_s(samples)
                words = [(k, first if k == 0 else ends[k - 1]) for k in range(len(ends))]
            out_items.append((samples, words))
        return out_items


def _first_sound_s(samples: np.ndarray, threshold: float = 0.02) -> float:
    """Where the first sound starts (the first word's start when only ends are known)."""
    loud = np.flatnonzero(np.abs(samples) > threshold * (np.abs(samples).max() or 1.0))
    return float(loud[0]) / SAMPLE_RATE_HZ if loud.size else 0.0


def pitch_shift(samples: np.ndarray, cents: int) -> np.ndarray:
    """sox ``pitch`` (same duration, shifted pitch and formants); 0 returns the input."""
    if cents == 0:
        return samples
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE_HZ, format="WAV", subtype="FLOAT")
    out = _run(
        ["sox", "-t", "wav", "-", "-t", "wav", "-e", "floating-point", "-", "pitch", str(cents)],
        "sox pitch",
        stdin=buffer.getvalue(),
    )
    return _read_wav(out)


def trim_silence(
    samples: np.ndarray, threshold: float = 0.01, margin_s: float = 0.03
) -> tuple[np.ndarray, float]:
    """Cut the synthesizer's own leading and trailing silence (keeps ``margin_s``); also
    return how many seconds were cut at the start."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak == 0.0:
        return samples, 0.0
    loud = np.flatnonzero(np.abs(samples) > threshold * peak)
    margin = int(margin_s * SAMPLE_RATE_HZ)
    start = max(0, loud[0] - margin)
    return samples[start : loud[-1] + margin], start / SAMPLE_RATE_HZ
