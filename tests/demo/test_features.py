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


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_noise_mixed_in_the_mel_domain_is_the_noise_mixed_in_the_waveform(snr_db: float) -> None:
    """Laying a noise's mel power over a clip's features at an SNR gives (within 0.05 of the
    normalized scale, about 2 dB) the features of the waveform mixed at that SNR, as the data
    mixes it; the clean features are far from both."""
    from training import augment

    pcm = synthesize("turn on the kitchen light please")
    samples = pcm.astype(np.float32) / 32768.0
    noise = augment.white(np.random.default_rng(1), len(samples), [])
    mixed = augment.mix_at_snr(samples, noise, snr_db)
    expected, expected_floor = features.speech_features(
        (mixed * 32768).clip(-32768, 32767).astype(np.int16)
    )
    speech, _ = features.speech_features(pcm)
    noise_feats, _ = features.speech_features((noise * 0.2 * 32768).astype(np.int16))
    noise_power = features.to_power(noise_feats[:, : speech.shape[1]])
    got, floor = features.mix_noise(speech, noise_power, snr_db)
    assert float((got - torch.as_tensor(expected)).abs().mean()) < 0.05
    assert abs(floor - expected_floor) < 0.05
    assert float((torch.as_tensor(speech) - torch.as_tensor(expected)).abs().mean()) > 0.1


def test_power_and_features_convert_both_ways_exactly() -> None:
    speech, floor = features.speech_features(synthesize("what time is it"))
    back, back_floor = features.from_power(features.to_power(speech))
    assert torch.allclose(back, torch.as_tensor(speech), atol=1e-5)
    assert back_floor == pytest.approx(floor, abs=1e-5)


def test_every_kind_of_made_noise_has_the_asked_shape_and_differs_by_seed() -> None:
    from training import mel_noise

    speech, _ = features.speech_features(synthesize("set a timer for five minutes"))
    for kind in mel_noise.KINDS:
        one = mel_noise.noise(np.random.default_rng(3), 250, [speech], kind)
        assert one.shape == (128, 250) and (one >= 0).all() and one.mean() > 0
        assert np.array_equal(one, mel_noise.noise(np.random.default_rng(3), 250, [speech], kind))
        assert not np.array_equal(
            one, mel_noise.noise(np.random.default_rng(4), 250, [speech], kind)
        )
    with pytest.raises(ValueError, match="no noise kind 'rain'"):
        mel_noise.noise(np.random.default_rng(0), 10, [speech], "rain")


def test_training_batches_get_fresh_noise_and_masks_only_when_asked() -> None:
    """Off, a batch is exactly the cached features (old runs reproduce); on, the same seed
    gives the same batch, another seed another one, the padding after the speech is left as
    inference has it (masks), and nothing is noised before ``clean_until`` (``noisy``)."""
    from training.audio_data import Split
    from training.stage_hear import HearConfig, batch_features, training_features

    clips = [features.speech_features(synthesize(t)) for t in ("lights off", "what time is it")]
    split = Split([{}, {}], [c[0].astype(np.float16) for c in clips],
                  np.array([c[1] for c in clips]), [])  # fmt: skip
    frames = max(c[0].shape[1] for c in clips) + 40
    plain = batch_features(split, [0, 1], frames)
    assert torch.equal(training_features(split, [0, 1], frames, HearConfig(), 5, True), plain)
    noisy = HearConfig(noise=1.0, noise_snr=(0.0, 0.0))
    assert torch.equal(training_features(split, [0, 1], frames, noisy, 5, False), plain)
    once = training_features(split, [0, 1], frames, noisy, 5, True)
    assert torch.equal(once, training_features(split, [0, 1], frames, noisy, 5, True))
    assert not torch.equal(once, training_features(split, [0, 1], frames, noisy, 6, True))
    assert float((once - plain).abs().mean()) > 0.05
    masked = training_features(split, [0, 1], frames, HearConfig(mask=1.0), 5, True)
    for row, (speech, _) in enumerate(clips):
        n = speech.shape[1]
        assert torch.equal(masked[row, :, n:], plain[row, :, n:])
    assert not torch.equal(masked, plain)


def test_stage_two_reads_extra_copies_of_each_clip_with_fresh_noise_and_warp() -> None:
    """``speak.copies``: copy 0 is each clip's embeddings as synthesized (so one copy is the
    old recipe), the extra copies are the same clips heard through fresh noise and warp,
    different from copy 0, the same again for the same seed; zero copies is refused."""
    from training.audio_data import Split
    from training.model import DemoSpec, build_model
    from training.stage_speak import SpeakConfig, audio_copies, cache_audio

    clips = [features.speech_features(synthesize(t)) for t in ("lights off", "what time is it")]
    split = Split([{}, {}], [c[0].astype(np.float16) for c in clips],
                  np.array([c[1] for c in clips]), [])  # fmt: skip
    frames = max(c[0].shape[1] for c in clips) + 40
    model = build_model(300, DemoSpec(), seed=0)
    config = SpeakConfig(audio_frames=frames, audio_tokens=16, copies=3, noise=1.0, warp=0.1)
    made = audio_copies(model, split, config, seed=7)
    assert made.shape == (6, 16, DemoSpec().text_hidden)
    plain = cache_audio(model, split, frames=frames, tokens=16)
    assert torch.equal(made[:2], plain)
    for k in (1, 2):
        assert float((made[2 * k : 2 * k + 2] - plain).float().abs().mean()) > 1e-3
    assert not torch.equal(made[2:4], made[4:6])
    assert torch.equal(made, audio_copies(model, split, config, seed=7))
    with pytest.raises(ValueError, match="at least 1"):
        audio_copies(model, split, SpeakConfig(copies=0), seed=7)
