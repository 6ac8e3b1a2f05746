"""Background noise made on the fly, in the mel domain, for stage 1.

Each synthesized clip is rendered once, with one noise at one level (``augment.py``); over
tens of epochs the encoder meets the same noisy clip again and again, and only the six
training noise types. Here every step can lay a fresh noise over a clip's cached features:
mel power adds (``features.mix_noise``), so a noise is a ``(128, frames)`` power array, drawn
from a family wide enough that the held-out noises (fan, music, cafe, traffic) are somewhere
inside it without being made:

- ``colored``: a random spectral slope (from rising to brown) shaped by a few broad bumps,
  sometimes with steady tones (hum, fan blades), slowly swelling and fading;
- ``bursts``: short decaying transients (dishes, steps, passing cars) over a weaker colored bed;
- ``babble``: other clips' speech, shifted and summed (a cafe, a television).

The fluctuation of a noise's power from frame to frame is that of a periodogram: a mel bin
averages few FFT bins at low frequencies (it flickers) and many at high ones (it is smooth).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from training import features

KINDS = ("colored", "bursts", "babble")
FRAME_S = 0.01


@functools.lru_cache(maxsize=1)
def _bins() -> tuple[np.ndarray, np.ndarray]:
    """Centre frequency (Hz) of each mel bin and how many FFT bins it averages."""
    filters = np.asarray(features.feature_extractor().mel_filters)  # (201, 128)
    freqs = np.linspace(0, 8000, filters.shape[0])
    weight = filters / filters.sum(axis=0, keepdims=True)
    centres = (freqs[:, None] * weight).sum(axis=0)
    spread = np.maximum(1.0, (filters > 0).sum(axis=0) / 2.0)
    return centres, spread


def _shape(rng: np.random.Generator) -> np.ndarray:
    """A random spectral envelope over the 128 bins (power, mean 1)."""
    centres, _ = _bins()
    slope = rng.uniform(-0.5, 2.5)  # power ~ f^-slope: 0 white, 1 pink, 2 brown
    envelope = (centres / 1000.0 + 0.1) ** (-slope)
    bins = np.arange(len(centres))
    for _ in range(rng.integers(0, 4)):
        gain = 10 ** (rng.uniform(-15, 15) / 10) - 1
        envelope = envelope * (1 + max(gain, -0.97) * np.exp(
            -0.5 * ((bins - rng.uniform(0, len(bins))) / rng.uniform(4, 40)) ** 2))  # fmt: skip
    return envelope / envelope.mean()


def _flicker(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Periodogram fluctuation: gamma with the bin's number of FFT bins as its shape."""
    _, spread = _bins()
    return rng.gamma(spread[:, None], 1.0 / spread[:, None], size=(len(spread), frames))


def _swell(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A slow loudness modulation over time (mean about 1)."""
    t = np.arange(frames) * FRAME_S
    depth, rate = rng.uniform(0, 0.8), rng.uniform(0.1, 4.0)
    return 1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))


def colored(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Stationary-ish noise of a random colour, sometimes with steady tones."""
    envelope = _shape(rng)
    if rng.random() < 0.3:  # hum or blade tones: a few bins far above their neighbours
        for _ in range(rng.integers(1, 4)):
            envelope[rng.integers(0, 40)] *= 10 ** (rng.uniform(10, 25) / 10)
    return envelope[:, None] * _swell(rng, frames)[None, :] * _flicker(rng, frames)


def bursts(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Short decaying transients at random times over a colored bed 10-20 dB below them."""
    out = colored(rng, frames) * 10 ** (-rng.uniform(10, 20) / 10)
    rate = rng.uniform(0.5, 4.0)  # bursts a second
    for _ in range(rng.poisson(rate * frames * FRAME_S) + 1):
        start = rng.integers(0, frames)
        decay = np.exp(-np.arange(frames - start) * FRAME_S / rng.uniform(0.02, 0.3))
        out[:, start:] += _shape(rng)[:, None] * decay[None, :] * rng.uniform(0.3, 3.0)
    return out * _flicker(rng, frames)


def babble(rng: np.random.Generator, frames: int, others: Sequence[np.ndarray]) -> np.ndarray:
    """One to six other clips' speech (normalized log-mel frames), each shifted in time,
    repeated to length and brought to the same loudness, summed."""
    out = np.zeros((len(_bins()[0]), frames))
    weights = features.power_weights().numpy().astype(np.float64)
    for _ in range(rng.integers(1, 7)):
        power = features.to_power(others[rng.integers(0, len(others))]).numpy().astype(np.float64)
        power = np.roll(np.tile(power, (1, frames // power.shape[1] + 1)),
                        -rng.integers(0, power.shape[1]), axis=1)[:, :frames]  # fmt: skip
        out += power / (float((weights @ power).mean()) + 1e-20)
    return out


def noise(
    rng: np.random.Generator, frames: int, others: Sequence[np.ndarray], kind: str | None = None
) -> np.ndarray:
    """A random noise ``(128, frames)`` of ``kind`` (by default one of ``KINDS`` at random);
    ``others``: speech frames of other clips, for babble."""
    kind = kind or KINDS[rng.integers(0, len(KINDS))]
    if kind == "colored":
        return colored(rng, frames)
    if kind == "bursts":
        return bursts(rng, frames)
    if kind == "babble":
        return babble(rng, frames, others)
    raise ValueError(f"no noise kind {kind!r} ({', '.join(KINDS)})")
