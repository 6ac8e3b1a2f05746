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


def test_the_identity_warp_changes_nothing_and_others_keep_the_level() -> None:
    """Factor 1 is the identity; any factor keeps a flat spectrum flat (rows sum to one) and
    moves a formant-like peak up for factors above 1 and down below."""
    assert torch.equal(features.warp_matrix(1.0), torch.eye(128))
    peak = torch.zeros(128, 1)
    peak[40] = 1.0
    for alpha in (0.9, 1.1):
        matrix = features.warp_matrix(alpha)
        assert torch.allclose(matrix.sum(1), torch.ones(128))
        moved = int((matrix @ peak).argmax())
        assert (moved > 40) if alpha > 1 else (moved < 40)


def test_warped_batches_depend_on_their_seed_alone() -> None:
    """Each clip draws its own factor; the same seed (a resumed step) warps the same way."""
    from training.stage_hear import warped

    feats = torch.randn(4, 128, 20)
    assert warped(feats, 0.0, 7) is feats
    once, again = warped(feats, 0.1, 7), warped(feats, 0.1, 7)
    assert torch.equal(once, again) and not torch.equal(once, feats)
    assert not torch.equal(once, warped(feats, 0.1, 8))
