"""Voxtral's mel features, kept compactly: only the frames that speech touches.

Inference pads every clip with zeros to 30 s and computes 3000 log-mel frames
(``WhisperFeatureExtractor``, 128 bins, hop 160, window 400). Every frame past the end of the
speech is ``log10(1e-10)``, raised to the clip's floor (its loudest value minus 8), so the
3000 frames are rebuilt exactly from the frames that overlap the speech and that floor
(``tests/training/test_features.py`` checks it bit for bit). A 3 s clip then costs
~300 frames instead of 3000, and the 30 s window is rebuilt when a batch is made.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

HOP = 160
N_FFT = 400
WINDOW_FRAMES = 3000
WINDOW_SAMPLES = 480_000


@functools.lru_cache(maxsize=1)
def _mel_filters() -> torch.Tensor:
    return torch.from_numpy(feature_extractor().mel_filters).to(torch.float32)


def feature_extractor():  # type: ignore[no-untyped-def]
    """The checkpoint's feature extractor (what ``tiny_model.py`` saves)."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=HOP, chunk_length=30, n_fft=N_FFT
    )


def speech_features(pcm: np.ndarray) -> tuple[np.ndarray, float]:
    """The speech frames of an int16 clip, ``(128, frames)`` float32, and the padding value.

    The frames are clamped and normalized (``(x + 4) / 4``) exactly as the feature extractor
    does over the full 30 s window; ``window`` rebuilds the rest from the padding value.
    """
    samples = pcm.astype(np.float32) / 32768.0
    if len(samples) > WINDOW_SAMPLES:
        raise ValueError("clips longer than one 30 s window are not supported here")
    frames = len(samples) // HOP + 1
    keep = min(frames + 2, WINDOW_FRAMES)
    padded = np.zeros((keep + 1) * HOP + N_FFT, dtype=np.float32)
    padded[: len(samples)] = samples
    stft = torch.stft(
        torch.from_numpy(padded), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True
    )
    power = stft[..., :-1].abs() ** 2
    mel = _mel_filters().T @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()[:, :keep]
    floor = float(log_spec.max()) - 8.0
    log_spec = torch.maximum(log_spec, torch.tensor(floor))
    return ((log_spec + 4.0) / 4.0).numpy(), float((max(-10.0, floor) + 4.0) / 4.0)


def window(
    speech: np.ndarray | torch.Tensor, floor: float, frames: int = WINDOW_FRAMES
) -> torch.Tensor:
    """The first ``frames`` frames of the 30 s window: the speech frames, then the floor."""
    speech = torch.as_tensor(speech, dtype=torch.float32)
    out = torch.full((speech.shape[0], frames), floor, dtype=torch.float32)
    n = min(frames, speech.shape[1])
    out[:, :n] = speech[:, :n]
    return out


@functools.lru_cache(maxsize=64)
def warp_matrix(alpha: float) -> torch.Tensor:
    """``(128, 128)``: vocal tract length perturbation of mel features, ``warp_matrix(a) @ mel``.

    Frequencies below a boundary are scaled by ``alpha`` (> 1: a shorter vocal tract, higher
    formants), those above it map linearly onto the rest of the band so 0 and 8 kHz stay in
    place (Jaitly and Hinton's piecewise-linear warp); each warped bin interpolates the two mel
    bins around the frequency it comes from. A speaker the data does not have, roughly, for
    the cost of a matrix product: it moves formants without the synthesizer's help.
    """
    from transformers.audio_utils import hertz_to_mel, mel_to_hertz

    top = 8000.0
    bins = _mel_filters().shape[1]
    edges = np.linspace(0.0, hertz_to_mel(top, mel_scale="slaney"), bins + 2)
    centres = mel_to_hertz(edges[1:-1], mel_scale="slaney")  # the filters' peaks
    boundary = 0.8 * top * min(alpha, 1.0) / alpha
    grid = np.linspace(0, top, 4001)
    warped = np.where(
        grid <= boundary,
        grid * alpha,
        alpha * boundary + (top - alpha * boundary) * (grid - boundary) / (top - boundary),
    )
    sources = np.interp(centres, warped, grid)  # the frequency each target bin comes from
    position = np.interp(sources, centres, np.arange(len(centres)))
    low = np.clip(np.floor(position).astype(int), 0, len(centres) - 2)
    frac = np.clip(position - low, 0.0, 1.0)
    matrix = np.zeros((len(centres), len(centres)), dtype=np.float32)
    rows = np.arange(len(centres))
    matrix[rows, low] = 1 - frac
    matrix[rows, low + 1] += frac
    return torch.from_numpy(matrix)


@functools.lru_cache(maxsize=1)
def power_weights() -> torch.Tensor:
    """Per mel bin, the weight that turns a frame's mel powers into its waveform power.

    Least squares over the FFT bins (``filters @ weights ~ 1``): the mel bins of a frame, so
    weighted, sum to the power of the frame's spectrum, whatever its shape: signal-to-noise
    ratios measured with them mean what they mean on the waveform (``augment.mix_at_snr``).
    """
    filters = _mel_filters().double().numpy()
    weights = np.linalg.lstsq(filters, np.ones(filters.shape[0]), rcond=None)[0]
    return torch.from_numpy(np.clip(weights, 0, None)).float()


def to_power(speech: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Normalized log-mel frames back to mel power (below the clip's floor: the floor)."""
    return torch.pow(10.0, 4.0 * torch.as_tensor(speech, dtype=torch.float32) - 4.0)


def from_power(power: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mel power to normalized log-mel frames and the padding value, as ``speech_features``."""
    log_spec = torch.clamp(power, min=1e-10).log10()
    floor = float(log_spec.max()) - 8.0
    log_spec = torch.maximum(log_spec, torch.tensor(floor))
    return (log_spec + 4.0) / 4.0, float((max(-10.0, floor) + 4.0) / 4.0)


def frame_power(power: torch.Tensor) -> torch.Tensor:
    """Each frame's waveform power, from its mel powers ``(128, frames)``."""
    return power_weights() @ power


def speech_power(power: torch.Tensor) -> float:
    """Mean power of the loud frames (above a fifth of the loudest), as ``mix_at_snr`` measures
    speech: the silence around a command does not lower it."""
    energy = frame_power(power)
    active = energy[energy > 0.2 * energy.max()]
    return float(active.mean()) if active.numel() else 1e-12


def mix_noise(
    speech: np.ndarray | torch.Tensor, noise: torch.Tensor, snr_db: float
) -> tuple[torch.Tensor, float]:
    """A clip's speech frames with ``noise`` (mel power, same shape) added at ``snr_db``: the
    features of the clip recorded in that noise (power adds; the cross terms of speech and
    noise, zero on average, are left out). Returns the frames and their padding value."""
    power = to_power(speech)
    noise_level = float(frame_power(noise).mean()) + 1e-20
    scale = speech_power(power) / noise_level / 10 ** (snr_db / 10)
    return from_power(power + scale * noise)
