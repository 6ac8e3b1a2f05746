"""The demo model: a small ``VoxtralForConditionalGeneration`` and its training-only heads.

The checkpoint is the real architecture with small widths (``DemoSpec``); nothing of training
is saved in it. Training adds two heads that inference never sees:

- a character CTC head on the encoder output (50 frames a second): the encoder learns to hear;
- a token CTC over the projected audio embeddings (12.5 a second) whose classifier IS the
  decoder's input embedding matrix: each spoken word's audio embedding is pulled towards the
  embedding of the word's token, so the decoder reads audio the way it reads text.

``encode`` runs the encoder on the first ``frames`` mel frames of the 30 s window (the window
inference uses is 3000 frames; fewer train faster and are adapted to the full window later);
with 3000 frames it is exactly ``model.get_audio_features``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from assistant.testing.tiny_model import BOS_ID, EOS_ID, PAD_ID

BLANK_ID = 20
"""``<SPECIAL_20>``, never used by the tokenizer: the token CTC's blank."""
CHARS = " abcdefghijklmnopqrstuvwxyz'"
"""The character CTC's alphabet (index 0 is its blank, so character i is class i + 1)."""


@dataclass(frozen=True)
class DemoSpec:
    """Widths of the demo model (vLLM-compatible: text head size 32)."""

    audio_hidden: int = 64
    audio_layers: int = 2
    audio_heads: int = 2
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 384
    max_position_embeddings: int = 8192


def make_config(vocab_size: int, spec: DemoSpec) -> Any:
    """The ``VoxtralConfig`` of the demo checkpoint."""
    from assistant.testing.tiny_model import TinyModelSpec, voxtral_config

    widths = TinyModelSpec(
        text_hidden_size=spec.text_hidden,
        text_layers=spec.text_layers,
        text_heads=spec.text_heads,
        text_kv_heads=spec.text_kv_heads,
        audio_hidden_size=spec.audio_hidden,
        audio_layers=spec.audio_layers,
        audio_heads=spec.audio_heads,
        max_position_embeddings=spec.max_position_embeddings,
        text_intermediate_size=spec.text_intermediate,
    )
    return voxtral_config(vocab_size, widths, rope_theta=10000.0, tie_word_embeddings=False)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position embeddings (the encoder's are frozen: they must mean
    something from the start)."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


RESIDUAL_OUTPUTS = ("out_proj", "fc2", "o_proj", "down_proj")
"""Layers that add into a residual stream: initialized smaller, so the stream stays stable."""


def init_weights(model: Any) -> None:
    """Initialization for small widths: every linear and convolution with std 1/sqrt(fan in)
    (transformers' fixed 0.02 suits widths near 2,500 and leaves a width-64 model nearly
    silent: its first hundreds of steps only grow the weights), residual outputs divided by
    sqrt(2 x layers), embeddings with std 1 (each decoder layer normalizes its input)."""
    layers = {
        "audio_tower": model.config.audio_config.num_hidden_layers,
        "language_model": model.config.text_config.num_hidden_layers,
    }
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                fan_in = module.weight[0].numel()
                std = fan_in**-0.5
                if name.rsplit(".", 1)[-1] in RESIDUAL_OUTPUTS:
                    depth = next((n for key, n in layers.items() if key in name), 1)
                    std /= (2 * depth) ** 0.5
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding) and "embed_positions" not in name:
                module.weight.normal_(0.0, 1.0)


def build_model(vocab_size: int, spec: DemoSpec, seed: int) -> Any:
    """A freshly initialized demo model (sinusoidal encoder positions)."""
    from transformers import GenerationConfig, VoxtralForConditionalGeneration

    torch.manual_seed(seed)
    config = make_config(vocab_size, spec)
    model = VoxtralForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    init_weights(model)
    tower = model.model.audio_tower
    with torch.no_grad():
        tower.embed_positions.weight.copy_(sinusoids(1500, spec.audio_hidden))
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID
    )
    return model


def load_weights(model: Any, folder: Path, seed: int = 0) -> None:
    """Start ``model`` from an exported checkpoint's weights (e.g. the shipped demo), read by
    ``from_pretrained`` as the product reads them. Its spec must be the one ``model`` has, or
    differ only in an encoder ``k`` times as wide with ``k`` times the heads: then the saved
    encoder is widened to it (``widened_audio``; ``seed`` draws the splits): the model starts
    with the checkpoint's layers, computing what they compute but for the position table."""
    from transformers import VoxtralForConditionalGeneration

    saved = VoxtralForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    weights = saved.state_dict()
    have, want = spec_of(saved), spec_of(model)
    if want.audio_hidden != have.audio_hidden:
        factor = want.audio_hidden // have.audio_hidden
        if asdict(want) != asdict(widen_spec(have, factor)):
            raise ValueError(
                f"{folder} does not fit this model's spec and is not it with a wider encoder: "
                f"saved {asdict(have)}, wanted {asdict(want)}"
            )
        weights = widened_audio(weights, have.audio_hidden, factor, seed)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{folder} does not fit this model's spec: {e}") from None


def widen_spec(spec: DemoSpec, factor: int) -> DemoSpec:
    """``spec`` with an encoder ``factor`` times as wide: the heads multiply, their size stays."""
    return DemoSpec(**{**asdict(spec), "audio_hidden": spec.audio_hidden * factor,
                       "audio_heads": spec.audio_heads * factor})  # fmt: skip


def widened_audio(
    weights: dict[str, torch.Tensor], hidden: int, factor: int, seed: int
) -> dict[str, torch.Tensor]:
    """The weights of a model whose encoder is ``factor`` times as wide and computes what this
    one computes but for its position table (Net2Net's widening).

    Every encoder vector becomes ``factor`` copies of itself side by side: a layer's outputs
    (and biases, norms) are repeated; its weights on a repeated input are split among the
    copies in random shares that sum to the original weight (drawn from ``seed``), so the
    outputs are unchanged while the copies get different gradients and grow apart in
    training. Layer norms see the same mean and variance over repeated copies, the attention
    heads are repeated whole (their size stays), the projector's four stacked frames each
    split the same way. The decoder is untouched.

    The frozen position table is NOT repeated: it becomes Whisper's sinusoids of the new width,
    which is all Mistral's format (vLLM) can hold (it computes them; a repeated table would be
    exact here and refused by ``write_mistral_format``). That alone moves the audio embeddings
    a long way (relative difference 0.72 on a spoken command with run r10's weights): the wider
    model starts with the checkpoint's layers, not its outputs, and stage 1 must follow.
    """
    gen = torch.Generator().manual_seed(seed)

    def split_in(w: torch.Tensor, dim: int) -> torch.Tensor:
        shares = torch.rand((factor, *w.shape), generator=gen) + 0.5
        shares = shares / shares.sum(0)
        return torch.cat([w * share for share in shares], dim=dim)

    def repeat_out(w: torch.Tensor) -> torch.Tensor:
        return torch.cat([w] * factor, dim=0)

    out = {}
    for name, w in weights.items():
        key = name.split("audio_tower.", 1)[-1] if "audio_tower." in name else None
        if "multi_modal_projector.linear_1.weight" in name:
            frames = w.shape[1] // hidden
            blocks = [split_in(w[:, f * hidden : (f + 1) * hidden], 1) for f in range(frames)]
            out[name] = torch.cat(blocks, dim=1)
        elif key is None:
            out[name] = w
        elif key == "embed_positions.weight":
            out[name] = sinusoids(w.shape[0], w.shape[1] * factor)
        elif w.dim() == 1 or key == "conv1.weight":  # biases, norms; conv1 reads mel bins
            out[name] = repeat_out(w)
        else:  # conv2, attention, fc1, fc2: repeated inputs and outputs
            out[name] = split_in(repeat_out(w), 1)
    return out


class TrainingHeads(nn.Module):
    """The heads only training uses (never saved into the checkpoint)."""

    def __init__(self, spec: DemoSpec) -> None:
        super().__init__()
        self.chars = nn.Linear(spec.audio_hidden, len(CHARS) + 1)
        # Audio embeddings and token embeddings both have entries of size ~1: their dot
        # product over the text width is ~sqrt(width) large; this brings the logits near 1.
        self.token_scale = nn.Parameter(torch.tensor(-0.5 * math.log(spec.text_hidden)))


def encode(model: Any, feats: torch.Tensor) -> torch.Tensor:
    """Encoder output ``(batch, frames // 2, hidden)`` for mel features ``(batch, 128, frames)``.

    Exactly the encoder's own forward for 3000 frames; for fewer, the same layers over the
    first positions only (no attention mask: the product runs none either).
    """
    tower = model.model.audio_tower
    x = nn.functional.gelu(tower.conv1(feats))
    x = nn.functional.gelu(tower.conv2(x)).permute(0, 2, 1)
    x = x + tower.embed_positions.weight[: x.shape[1]]
    for layer in tower.layers:
        x = layer(x, attention_mask=None)
    return tower.layer_norm(x)


def project(model: Any, encoded: torch.Tensor) -> torch.Tensor:
    """Audio embeddings ``(batch, frames // 8, text hidden)``: 4 encoder frames per token."""
    batch, positions, hidden = encoded.shape
    packed = encoded.reshape(batch, positions // 4, 4 * hidden)
    return model.model.multi_modal_projector(packed)


def char_targets(text: str) -> list[int]:
    """A transcript as character classes (lower case; other characters dropped)."""
    out = []
    for ch in text.lower().replace("-", " "):
        index = CHARS.find(ch)
        if index >= 0:
            out.append(index + 1)
    return out


def spec_of(model: Any) -> DemoSpec:
    """The ``DemoSpec`` a loaded model was built with."""
    a, t = model.config.audio_config, model.config.text_config
    return DemoSpec(
        audio_hidden=a.hidden_size,
        audio_layers=a.num_hidden_layers,
        audio_heads=a.num_attention_heads,
        text_hidden=t.hidden_size,
        text_layers=t.num_hidden_layers,
        text_heads=t.num_attention_heads,
        text_kv_heads=t.num_key_value_heads,
        text_intermediate=t.intermediate_size,
        max_position_embeddings=t.max_position_embeddings,
    )


def describe(spec: DemoSpec) -> dict[str, Any]:
    """The spec as a plain dict (for logs and checkpoints)."""
    return asdict(spec)
