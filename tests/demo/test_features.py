"""The training data's compact features rebuild the product's 30 s features exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assistant.testing.speech import synthesize

features = pytest.importorskip("training.features")


@pytest.mark.parametrize("gain", [1.0, 0.01, 0.0001])
def test_speech_frames_rebuild_the_product_window_exactly(gain: float) -> None:
    """Speech frames plus the padding value give bit for bit what the model worker computes."""
    pcm = (synthesize("turn on the kitchen light").astype(np.float64) * gain).astype(np.int16)
    samples = pcm.astype(np.float32) / 32768.0
    padded = np.zeros(features.WINDOW_SAMPLES, dtype=np.float32)
    padded[: len(samples)] = samples
    expected = features.feature_extractor()(
        padded,
        sampling_rate=16000,
        padding=True,
        truncation=False,
        pad_to_multiple_of=features.WINDOW_SAMPLES,
        return_tensors="pt",
    )["input_features"][0]
    speech, floor = features.speech_features(pcm)
    assert torch.equal(features.window(speech, floor), expected)
