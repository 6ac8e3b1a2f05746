"""The test kit writes the tiny Voxtral in Mistral's format, and it is the same model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import VoxtralConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.whisper.modeling_whisper import sinusoids

from assistant.testing.mistral_format import (
    MistralFormatError,
    build_tiny_mistral_model,
    write_mistral_format,
)
from assistant.testing.tiny_model import build_tiny_model

# transformers' convert_voxtral_weights_to_hf.py (Mistral name -> Hugging Face name), restated
# here because transformers keeps that script out of its wheel.
_TO_HF = [
    (r"output\.weight", "language_model.lm_head.weight"),
    (r"norm\.weight", "language_model.model.norm.weight"),
    (r"mm_whisper_embeddings\.tok_embeddings\.weight", "language_model.model.embed_tokens.weight"),
    (
        r"layers\.(\d+)\.attention_norm\.weight",
        r"language_model.model.layers.\1.input_layernorm.weight",
    ),
    (
        r"layers\.(\d+)\.ffn_norm\.weight",
        r"language_model.model.layers.\1.post_attention_layernorm.weight",
    ),
    (
        r"layers\.(\d+)\.attention\.w(q|k|v|o)\.weight",
        r"language_model.model.layers.\1.self_attn.\2_proj.weight",
    ),
    (
        r"layers\.(\d+)\.feed_forward\.w1\.weight",
        r"language_model.model.layers.\1.mlp.gate_proj.weight",
    ),
    (
        r"layers\.(\d+)\.feed_forward\.w2\.weight",
        r"language_model.model.layers.\1.mlp.down_proj.weight",
    ),
    (
        r"layers\.(\d+)\.feed_forward\.w3\.weight",
        r"language_model.model.layers.\1.mlp.up_proj.weight",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.conv_layers\.0\.(weight|bias)",
        r"audio_tower.conv1.\1",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.conv_layers\.1\.(weight|bias)",
        r"audio_tower.conv2.\1",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.norm\.(weight|bias)",
        r"audio_tower.layer_norm.\1",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.layers\.(\d+)\.attention\.w([qkv])\.(weight|bias)",
        r"audio_tower.layers.\1.self_attn.\2_proj.\3",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.layers\.(\d+)\.attention\.wo\.(weight|bias)",
        r"audio_tower.layers.\1.self_attn.out_proj.\2",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.layers\.(\d+)\.attention_norm\.(weight|bias)",
        r"audio_tower.layers.\1.self_attn_layer_norm.\2",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.layers\.(\d+)\.feed_forward\.w1\.(weight|bias)",
        r"audio_tower.layers.\1.fc1.\2",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.layers\.(\d+)\.feed_forward\.w2\.(weight|bias)",
        r"audio_tower.layers.\1.fc2.\2",
    ),
    (
        r"mm_whisper_embeddings\.whisper_encoder\.transformer\.layers\.(\d+)\.ffn_norm\.(weight|bias)",
        r"audio_tower.layers.\1.final_layer_norm.\2",
    ),
    (
        r"mm_whisper_embeddings\.audio_language_projection\.0\.weight",
        "multi_modal_projector.linear_1.weight",
    ),
    (
        r"mm_whisper_embeddings\.audio_language_projection\.2\.weight",
        "multi_modal_projector.linear_2.weight",
    ),
]


def _converter_permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """The converter's ``permute_for_rope``: interleaved pairs -> rotate-half layout."""
    rows, columns = weight.shape
    return weight.view(heads, rows // heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def _converted_to_hf(
    consolidated: dict[str, torch.Tensor], config: VoxtralConfig
) -> dict[str, torch.Tensor]:
    text = config.text_config
    out = {}
    for name, tensor in consolidated.items():
        for pattern, replacement in _TO_HF:
            if re.fullmatch(pattern, name):
                new = re.sub(pattern, replacement, name)
                break
        else:
            raise AssertionError(f"the converter has no mapping for {name}")
        if new.startswith("language_model.") and "q_proj" in new:
            tensor = _converter_permute(tensor, text.num_attention_heads)
        elif new.startswith("language_model.") and "k_proj" in new:
            tensor = _converter_permute(tensor, text.num_key_value_heads)
        out[new] = tensor
    return out


@pytest.fixture(scope="module")
def mistral_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mistral_model(tmp_path_factory.mktemp("mistral-format"))


def test_converter_gives_back_the_same_weights(mistral_dir: Path) -> None:
    """transformers' converter logic turns consolidated.safetensors back into model.safetensors."""
    config = VoxtralConfig.from_pretrained(mistral_dir)
    hf = load_file(mistral_dir / "model.safetensors")
    back = _converted_to_hf(load_file(mistral_dir / "consolidated.safetensors"), config)
    table = hf.pop("audio_tower.embed_positions.weight")
    assert torch.equal(table, sinusoids(*table.shape))  # what the converter adds back
    assert back.keys() == hf.keys()
    for name, tensor in hf.items():
        assert torch.equal(back[name], tensor), name


def _mistral_rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Mistral's reference rotary: adjacent pairs of a head rotate as complex numbers."""
    head_dim = x.shape[-1]
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(positions.double(), freqs)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2))
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)[:, None, :]
    return torch.view_as_real(rotated).flatten(-2)


def test_attention_scores_agree_with_mistral_rotary(mistral_dir: Path) -> None:
    """Mistral's wq/wk with interleaved rotary score like transformers' q/k with rotate-half."""
    config = VoxtralConfig.from_pretrained(mistral_dir)
    text = config.text_config
    hf = load_file(mistral_dir / "model.safetensors")
    mistral = load_file(mistral_dir / "consolidated.safetensors")
    torch.manual_seed(1)
    x = torch.randn(9, text.hidden_size, dtype=torch.float64)
    positions = torch.arange(100, 109)
    group = text.num_attention_heads // text.num_key_value_heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(len(x), -1, text.head_dim)

    q_m = _mistral_rotary(
        heads(x @ mistral["layers.0.attention.wq.weight"].double().T), positions, 1e8
    )
    k_m = _mistral_rotary(
        heads(x @ mistral["layers.0.attention.wk.weight"].double().T), positions, 1e8
    )
    scores_m = torch.einsum("qhd,khd->hqk", q_m, k_m.repeat_interleave(group, dim=1))

    q = heads(x @ hf["language_model.model.layers.0.self_attn.q_proj.weight"].double().T)
    k = heads(x @ hf["language_model.model.layers.0.self_attn.k_proj.weight"].double().T)
    rotary = LlamaRotaryEmbedding(text)
    cos, sin = rotary(x[None].float(), positions[None])
    q, k = apply_rotary_pos_emb(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos.double(), sin.double()
    )
    scores_hf = torch.einsum("hqd,hkd->hqk", q[0], k[0].repeat_interleave(group, dim=0))
    torch.testing.assert_close(scores_hf, scores_m, rtol=1e-5, atol=1e-5)


def test_params_describe_the_model(mistral_dir: Path) -> None:
    """params.json carries the widths vLLM reads, with text heads of at least 32."""
    params = json.loads((mistral_dir / "params.json").read_text())
    config = VoxtralConfig.from_pretrained(mistral_dir)
    assert params["head_dim"] >= 32
    assert params["dim"] == config.text_config.hidden_size
    assert params["vocab_size"] == config.text_config.vocab_size
    encoder = params["multimodal"]["whisper_model_args"]["encoder_args"]
    assert encoder["dim"] * 4 == config.audio_config.intermediate_size
    assert encoder["max_source_positions"] == 1500
    assert (mistral_dir / "tekken.json").is_file()


def test_a_learned_position_table_is_refused(tmp_path: Path) -> None:
    """A checkpoint whose encoder positions are not sinusoids cannot be written."""
    folder = build_tiny_model(tmp_path / "plain")
    with pytest.raises(MistralFormatError, match="sinusoids"):
        write_mistral_format(folder)
