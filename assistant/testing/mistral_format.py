"""Write a tiny Voxtral checkpoint in Mistral's own format, the one vLLM serves.

vLLM loads Voxtral only from ``params.json``, ``consolidated.safetensors`` and ``tekken.json``
(``--config-format mistral --load-format mistral --tokenizer-mode mistral``). This module is the
inverse of transformers' ``convert_voxtral_weights_to_hf.py`` (which transformers keeps in its
source tree, not in its wheel): Hugging Face weight names go back to Mistral's, and the q/k
projections of the text decoder go back from the "rotate half" rotary layout to Mistral's
interleaved one.

Two things a Hugging Face checkpoint can hold that Mistral's format cannot:

- the audio encoder's position table: Mistral's format has none and vLLM computes Whisper's
  sinusoids, so ``build_tiny_mistral_model`` sets the Hugging Face table to those sinusoids too;
- a text attention head narrower than 32: vLLM's CPU attention stops on 16, so
  ``VLLM_TINY_SPEC`` keeps the tiny model's widths with heads of 32.

``build_tiny_mistral_model`` writes both formats into one folder (``config.json`` +
``model.safetensors`` for transformers, the Mistral files for vLLM), so the local worker and a
vLLM server run exactly the same weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.testing.tekken import TokenizerVersion, Vocabulary
from assistant.testing.tiny_model import TinyModelSpec, build_tiny_model

if TYPE_CHECKING:
    import torch

VLLM_TINY_SPEC = TinyModelSpec(text_heads=2, text_kv_heads=1)
"""The default tiny widths with text heads of 32 (64 / 2): vLLM's CPU attention needs >= 32."""

DOWNSAMPLE_FACTOR = 4
"""Encoder frames packed into one audio token (12.5 tokens per second)."""

_AUDIO = "mm_whisper_embeddings.whisper_encoder."

# Hugging Face name (as saved by ``save_pretrained``) -> Mistral name; the first match wins.
_NAMES: list[tuple[str, str]] = [
    (r"language_model\.lm_head\.weight", "output.weight"),
    (r"language_model\.model\.norm\.weight", "norm.weight"),
    (r"language_model\.model\.embed_tokens\.weight", "mm_whisper_embeddings.tok_embeddings.weight"),
    (
        r"language_model\.model\.layers\.(\d+)\.input_layernorm\.weight",
        r"layers.\1.attention_norm.weight",
    ),
    (
        r"language_model\.model\.layers\.(\d+)\.post_attention_layernorm\.weight",
        r"layers.\1.ffn_norm.weight",
    ),
    (
        r"language_model\.model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight",
        r"layers.\1.attention.w\2.weight",
    ),
    (
        r"language_model\.model\.layers\.(\d+)\.mlp\.gate_proj\.weight",
        r"layers.\1.feed_forward.w1.weight",
    ),
    (
        r"language_model\.model\.layers\.(\d+)\.mlp\.down_proj\.weight",
        r"layers.\1.feed_forward.w2.weight",
    ),
    (
        r"language_model\.model\.layers\.(\d+)\.mlp\.up_proj\.weight",
        r"layers.\1.feed_forward.w3.weight",
    ),
    (r"audio_tower\.conv1\.(weight|bias)", _AUDIO + r"conv_layers.0.\1"),
    (r"audio_tower\.conv2\.(weight|bias)", _AUDIO + r"conv_layers.1.\1"),
    (r"audio_tower\.layer_norm\.(weight|bias)", _AUDIO + r"transformer.norm.\1"),
    (
        r"audio_tower\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)",
        _AUDIO + r"transformer.layers.\1.attention.w\2.\3",
    ),
    (
        r"audio_tower\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
        _AUDIO + r"transformer.layers.\1.attention.wo.\2",
    ),
    (
        r"audio_tower\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)",
        _AUDIO + r"transformer.layers.\1.attention_norm.\2",
    ),
    (
        r"audio_tower\.layers\.(\d+)\.fc1\.(weight|bias)",
        _AUDIO + r"transformer.layers.\1.feed_forward.w1.\2",
    ),
    (
        r"audio_tower\.layers\.(\d+)\.fc2\.(weight|bias)",
        _AUDIO + r"transformer.layers.\1.feed_forward.w2.\2",
    ),
    (
        r"audio_tower\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
        _AUDIO + r"transformer.layers.\1.ffn_norm.\2",
    ),
    (
        r"multi_modal_projector\.linear_1\.weight",
        "mm_whisper_embeddings.audio_language_projection.0.weight",
    ),
    (
        r"multi_modal_projector\.linear_2\.weight",
        "mm_whisper_embeddings.audio_language_projection.2.weight",
    ),
]

_DROPPED = re.compile(r"audio_tower\.embed_positions\.weight")
"""Mistral's format has no position table (the loader computes sinusoids)."""


class MistralFormatError(ValueError):
    """A Hugging Face checkpoint that Mistral's format cannot represent."""


def mistral_name(hf_name: str) -> str:
    """The Mistral name of one Hugging Face weight (as ``save_pretrained`` names it)."""
    for pattern, replacement in _NAMES:
        if re.fullmatch(pattern, hf_name):
            return re.sub(pattern, replacement, hf_name)
    raise MistralFormatError(f"no Mistral name for the weight {hf_name!r}")


def interleave_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo transformers' rotary permutation of a q or k projection (``heads`` heads).

    transformers takes, within each head, the rows of Mistral's interleaved pairs
    ``(x0, x1), (x2, x3), ...`` and lays them out as ``x0, x2, ... | x1, x3, ...`` (rotate
    half); this puts them back in pairs.
    """
    rows, columns = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, columns).transpose(1, 2).reshape(rows, columns)


def to_mistral_state_dict(
    hf_weights: dict[str, torch.Tensor], text_config: Any
) -> dict[str, torch.Tensor]:
    """Hugging Face Voxtral weights (``model.safetensors`` names) as Mistral's ``consolidated``."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in hf_weights.items():
        if _DROPPED.fullmatch(name):
            continue
        target = mistral_name(name)
        if name.startswith("language_model.") and ".self_attn.q_proj." in name:
            tensor = interleave_rotary(tensor, text_config.num_attention_heads)
        elif name.startswith("language_model.") and ".self_attn.k_proj." in name:
            tensor = interleave_rotary(tensor, text_config.num_key_value_heads)
        out[target] = tensor.contiguous()
    return out


def mistral_params(config: Any) -> dict[str, Any]:
    """``params.json`` for a ``VoxtralConfig`` (the keys vLLM's Mistral config parser reads)."""
    text, audio = config.text_config, config.audio_config
    rope = getattr(text, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(text, "rope_theta", None))
    if rope.get("rope_type", "default") != "default" or rope_theta is None:
        raise MistralFormatError(f"only plain rotary embeddings are written, not {rope!r}")
    if getattr(text, "tie_word_embeddings", False):
        raise MistralFormatError("tied input and output embeddings are not written")
    if config.projector_hidden_act != "gelu" or text.hidden_act != "silu":
        raise MistralFormatError("Voxtral's activations are gelu (projector) and silu (decoder)")
    return {
        "dim": text.hidden_size,
        "n_layers": text.num_hidden_layers,
        "head_dim": text.head_dim,
        "hidden_dim": text.intermediate_size,
        "n_heads": text.num_attention_heads,
        "n_kv_heads": text.num_key_value_heads,
        "rope_theta": float(rope_theta),
        "norm_eps": text.rms_norm_eps,
        "vocab_size": text.vocab_size,
        "max_seq_len": text.max_position_embeddings,
        "multimodal": {
            "whisper_model_args": {
                "encoder_args": {
                    "audio_encoding_args": {
                        "sampling_rate": 16000,
                        "num_mel_bins": audio.num_mel_bins,
                        "hop_length": 160,
                        "window_size": 400,
                    },
                    "dim": audio.hidden_size,
                    "n_layers": audio.num_hidden_layers,
                    "head_dim": audio.hidden_size // audio.num_attention_heads,
                    "hidden_dim": audio.intermediate_size,
                    "n_heads": audio.num_attention_heads,
                    "vocab_size": audio.vocab_size,
                    "max_source_positions": audio.max_source_positions,
                },
                "downsample_args": {"downsample_factor": DOWNSAMPLE_FACTOR},
            }
        },
    }


def _check_sinusoidal(weights: dict[str, torch.Tensor]) -> None:
    import torch
    from transformers.models.whisper.modeling_whisper import sinusoids

    table = weights.get("audio_tower.embed_positions.weight")
    if table is None:
        return
    if not torch.allclose(table.float(), sinusoids(*table.shape), atol=1e-6):
        raise MistralFormatError(
            "the audio encoder's position table is not Whisper's sinusoids: Mistral's format "
            "has no table (vLLM computes the sinusoids), so this model cannot be written"
        )


def write_mistral_format(folder: str | Path) -> Path:
    """Add ``params.json`` and ``consolidated.safetensors`` to a Hugging Face Voxtral folder.

    The folder must hold ``config.json``, one ``model.safetensors`` and ``tekken.json`` (as
    ``build_tiny_model`` writes them). Returns the folder.
    """
    from safetensors.torch import load_file, save_file
    from transformers import VoxtralConfig

    folder = Path(folder)
    if not (folder / "tekken.json").is_file():
        raise MistralFormatError(f"{folder} has no tekken.json")
    config = VoxtralConfig.from_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    _check_sinusoidal(weights)
    params = mistral_params(config)
    save_file(
        to_mistral_state_dict(weights, config.text_config), folder / "consolidated.safetensors"
    )
    (folder / "params.json").write_text(json.dumps(params, indent=2) + "\n", "utf-8")
    return folder


def use_sinusoidal_positions(folder: str | Path) -> None:
    """Set a Hugging Face checkpoint's audio position table to Whisper's sinusoids, in place."""
    from safetensors.torch import load_file, save_file
    from transformers.models.whisper.modeling_whisper import sinusoids

    path = Path(folder) / "model.safetensors"
    weights = load_file(path)
    table = weights["audio_tower.embed_positions.weight"]
    weights["audio_tower.embed_positions.weight"] = sinusoids(*table.shape).to(table.dtype)
    save_file(weights, path, metadata={"format": "pt"})


def build_tiny_mistral_model(
    folder: str | Path,
    version: TokenizerVersion = "v7",
    vocabulary: Vocabulary = "tiny",
    seed: int = 0,
    spec: TinyModelSpec = VLLM_TINY_SPEC,
) -> Path:
    """A tiny random Voxtral in both formats: transformers loads it, and so does vLLM."""
    folder = build_tiny_model(folder, version, vocabulary, seed, spec)
    use_sinusoidal_positions(folder)
    return write_mistral_format(folder)
