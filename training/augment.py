"""Acoustic conditions: background noise, room reverberation, loudness, silence around speech.

No noise recordings can be downloaded here, so noises are made procedurally, by type. Training
and the held-out benchmark use different types (``TRAIN_NOISES`` / ``HELDOUT_NOISES``), so the
benchmark's "10 dB background noise" is noise the model never heard. Babble is made of
synthesized speech played backwards (unintelligible, like a crowd far away).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SAMPLE_RATE_HZ = 16000

Rng = np.random.Generator


def _unit(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def _colored(rng: Rng, n: int, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE_HZ)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (-exponent / 2)
    return _unit(np.fft.irfft(spectrum, n))


def _bandpass(rng: Rng, x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE_HZ)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return _unit(np.fft.irfft(spectrum, len(x)))


def white(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """White noise."""
    return _unit(rng.standard_normal(n))


def pink(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """Pink (1/f) noise."""
    return _colored(rng, n, 1.0)


def brown(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """Brown (1/f^2) noise: rumble."""
    return _colored(rng, n, 2.0)


def hum(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) over a little hiss."""
    t = np.arange(n) / SAMPLE_RATE_HZ
    base = rng.choice([50.0, 60.0])
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
            for k in range(1, 8))  # fmt: skip
    return _unit(_unit(x) + 0.1 * rng.standard_normal(n))


def babble(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """Three to six voices talking at once, backwards."""
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        clip = _unit(pool[int(rng.integers(len(pool)))][::-1])
        start = int(rng.integers(-len(clip) // 2, max(1, n - len(clip) // 2)))
        while start < n:
            a, b = max(0, start), min(n, start + len(clip))
            out[a:b] += clip[a - start : b - start] * rng.uniform(0.5, 1.0)
            start += len(clip) + int(rng.integers(0, SAMPLE_RATE_HZ // 2))
    return _unit(out + 1e-4 * rng.standard_normal(n).astype(np.float32))


def clatter(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """Dishes and steps: short decaying bursts at random times over a little pink noise."""
    out = 0.05 * pink(rng, n, pool)
    for _ in range(int(rng.integers(3, 12) * n / SAMPLE_RATE_HZ / 3 + 1)):
        length = int(rng.uniform(0.02, 0.25) * SAMPLE_RATE_HZ)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5))
        burst = _bandpass(rng, burst, rng.uniform(200, 2000), rng.uniform(3000, 8000))
        start = int(rng.integers(0, max(1, n - length)))
        out[start : start + length] += burst[: n - start] * rng.uniform(0.3, 1.5)
    return _unit(out)


def fan(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """A fan or air conditioner: band-limited noise, slowly pulsing, with a blade tone."""
    t = np.arange(n) / SAMPLE_RATE_HZ
    x = _bandpass(rng, rng.standard_normal(n), rng.uniform(80, 200), rng.uniform(1500, 4000))
    x *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
    tone = np.sin(2 * np.pi * rng.uniform(90, 300) * t)
    return _unit(_unit(x) + rng.uniform(0.1, 0.5) * tone)


def music(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """A tune from another room: chords of decaying harmonic notes and a beat."""
    out = np.zeros(n)
    t_note = int(rng.uniform(0.2, 0.5) * SAMPLE_RATE_HZ)
    for start in range(0, n, t_note):
        length = min(t_note * 2, n - start)
        t = np.arange(length) / SAMPLE_RATE_HZ
        for _ in range(int(rng.integers(1, 4))):
            f = 110 * 2 ** (int(rng.integers(0, 36)) / 12)
            note = sum(np.sin(2 * np.pi * f * k * t) / k**1.5 for k in range(1, 5))
            out[start : start + length] += note * np.exp(-t * rng.uniform(2, 6))
        if rng.random() < 0.5:
            kick = np.sin(2 * np.pi * 60 * t[:1600]) * np.exp(-t[:1600] * 30)
            out[start : start + len(kick)] += 2 * kick
    return _unit(out)


def cafe(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """A cafe: crowd babble, cups and plates, room noise."""
    return _unit(babble(rng, n, pool) + 0.5 * clatter(rng, n, pool) + 0.3 * pink(rng, n, pool))


def traffic(rng: Rng, n: int, pool: Sequence[np.ndarray]) -> np.ndarray:
    """A street through a window: rumble with cars swelling past."""
    t = np.arange(n) / SAMPLE_RATE_HZ
    x = brown(rng, n, pool) + 0.3 * pink(rng, n, pool)
    swell = 1 + sum(np.exp(-((t - rng.uniform(0, t[-1] + 1e-9)) ** 2) / rng.uniform(0.3, 2))
                    for _ in range(int(rng.integers(1, 4))))  # fmt: skip
    return _unit(_bandpass(rng, x * swell, 30, 3000))


NoiseMaker = Callable[[Rng, int, Sequence[np.ndarray]], np.ndarray]
TRAIN_NOISES: dict[str, NoiseMaker] = {
    "white": white, "pink": pink, "brown": brown, "hum": hum, "babble": babble, "clatter": clatter,
}  # fmt: skip
HELDOUT_NOISES: dict[str, NoiseMaker] = {
    "fan": fan, "music": music, "cafe": cafe, "traffic": traffic,
}  # fmt: skip


def room_impulse(rng: Rng, rt60_s: float) -> np.ndarray:
    """A synthetic room impulse response: direct sound, early reflections, exponential tail."""
    length = int(min(1.2, rt60_s * 1.2) * SAMPLE_RATE_HZ)
    t = np.arange(length) / SAMPLE_RATE_HZ
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.005 * SAMPLE_RATE_HZ)] = 0
    ir = 0.3 * tail / np.sqrt(np.sum(tail**2) + 1e-12)
    ir[0] = 1.0
    for _ in range(int(rng.integers(2, 7))):
        ir[int(rng.uniform(0.002, 0.03) * SAMPLE_RATE_HZ)] += rng.uniform(-0.6, 0.6)
    return ir.astype(np.float32)


def reverberate(samples: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``samples`` in the room of ``ir`` (same length; the tail that runs over is cut)."""
    n = len(samples) + len(ir) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(samples, size) * np.fft.rfft(ir, size), size)[: len(samples)]
    return wet.astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` scaled so that speech power / noise power is ``snr_db``.

    Speech power is measured over the loud part (frames above a fifth of the loudest), so
    silence padded around a command does not lower it.
    """
    frames = speech[: len(speech) // 160 * 160].reshape(-1, 160)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    active = energy[energy > 0.2 * energy.max()] if energy.size and energy.max() > 0 else energy
    speech_power = float(active.mean()) if active.size else 1e-8
    noise_power = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    scale = np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))
    return (speech + scale * noise).astype(np.float32)


def normalize_peak(samples: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so the loudest sample is at ``peak_dbfs`` (0 = full scale)."""
    peak = float(np.abs(samples).max()) or 1.0
    return (samples * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)


def pad_silence(samples: np.ndarray, lead_s: float, trail_s: float) -> np.ndarray:
    """Silence before and after (what a voice-activity detector leaves around speech)."""
    lead = np.zeros(int(lead_s * SAMPLE_RATE_HZ), dtype=np.float32)
    trail = np.zeros(int(trail_s * SAMPLE_RATE_HZ), dtype=np.float32)
    return np.concatenate([lead, samples.astype(np.float32), trail])
