"""A checkpoint's encoder widened (Net2Net): the wider model starts out computing the same,
but for its position table (Whisper's sinusoids of the new width, as vLLM needs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

model_lib = pytest.importorskip("training.model")


def _narrow(tmp_path: Path) -> tuple[object, Path]:
    narrow = model_lib.build_model(300, model_lib.DemoSpec(), seed=3)
    with torch.no_grad():  # biases and norms away from their init, so copying them matters
        for name, p in narrow.model.audio_tower.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    folder = tmp_path / "narrow"
    narrow.save_pretrained(folder)
    return narrow, folder


def test_a_widened_encoder_makes_the_same_audio_embeddings_and_its_copies_grow_apart(
    tmp_path: Path,
) -> None:
    """Loaded into a model with twice the encoder width and heads, a checkpoint gives the
    same audio embeddings through the product's own path (``get_audio_features``, the full
    30 s window) but for the position tables (set aside here: the wide one is Whisper's
    sinusoids of the new width, which Mistral's format can hold, so it can be served by vLLM);
    the repeated units get different gradients (they can become different units); another
    seed splits the weights differently, the same seed the same."""
    from assistant.testing.mistral_format import _check_sinusoidal

    narrow, folder = _narrow(tmp_path)
    wide_spec = model_lib.widen_spec(model_lib.DemoSpec(), 2)
    assert (wide_spec.audio_hidden, wide_spec.audio_heads) == (128, 4)
    wide = model_lib.build_model(300, wide_spec, seed=0)
    model_lib.load_weights(wide, folder, seed=5)
    table = wide.model.audio_tower.embed_positions.weight
    _check_sinusoidal({"audio_tower.embed_positions.weight": table})
    mel = torch.randn(1, 128, 3000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tables = [m.model.audio_tower.embed_positions.weight for m in (narrow, wide)]
        kept = [t.clone() for t in tables]
        with_positions = wide.get_audio_features(mel).pooler_output
        for t in tables:
            t.zero_()
        before = narrow.get_audio_features(mel).pooler_output
        after = wide.get_audio_features(mel).pooler_output
        for t, k in zip(tables, kept, strict=True):
            t.copy_(k)
    assert before.shape == after.shape
    assert float((before - after).abs().max()) < 1e-4 * float(before.abs().max())
    assert not torch.allclose(with_positions, after)  # the table is in use, not left out

    tower = wide.model.audio_tower
    conv = tower.conv1.weight
    assert torch.equal(conv[:64], conv[64:])  # repeated outputs...
    fc1 = tower.layers[0].fc1.weight
    assert not torch.equal(fc1[:, :64], fc1[:, 64:])  # ...split inputs
    feats = mel[:, :, :400]
    model_lib.project(wide, model_lib.encode(wide, feats)).square().sum().backward()
    grad = tower.conv1.weight.grad
    assert grad is not None
    assert float((grad[:64] - grad[64:]).abs().max()) > 1e-3 * float(grad.abs().max())

    again = model_lib.build_model(300, wide_spec, seed=0)
    model_lib.load_weights(again, folder, seed=5)
    assert torch.equal(again.model.audio_tower.layers[0].fc1.weight, fc1)
    other = model_lib.build_model(300, wide_spec, seed=0)
    model_lib.load_weights(other, folder, seed=6)
    assert not torch.equal(other.model.audio_tower.layers[0].fc1.weight, fc1)


def test_a_checkpoint_that_no_widening_fits_is_refused(tmp_path: Path) -> None:
    """Other decoder widths, or an encoder not a whole multiple wider: a clear error."""
    _, folder = _narrow(tmp_path)
    for spec in (
        model_lib.DemoSpec(text_hidden=64, text_intermediate=128),
        model_lib.DemoSpec(audio_hidden=96, audio_heads=3),
        model_lib.DemoSpec(audio_hidden=128, audio_heads=2),
    ):
        with pytest.raises(ValueError, match="does not fit"):
            model_lib.load_weights(model_lib.build_model(300, spec, seed=0), folder)
