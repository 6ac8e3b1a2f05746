"""Build a tiny random Voxtral checkpoint that ``from_pretrained`` loads offline.

Same classes as the real model (``VoxtralForConditionalGeneration`` + ``VoxtralProcessor`` with a
128-bin ``WhisperFeatureExtractor`` and ``MistralCommonBackend``), tiny widths, deterministic
from a seed. Two constraints of the real architecture stay: the encoder's ``intermediate_size``
is 4x its hidden size (the projector packs 4 frames by reshaping to it) and
``max_source_positions`` is 1500 (3000 mel frames = one 30 s window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.testing.tekken import TokenizerVersion, Vocabulary, write_tekken

AUDIO_TOKEN_ID = 24
TRANSCRIBE_ID = 34
"""``[TRANSCRIBE]``: a transcription prompt ends with it (Voxtral's layout)."""
BOS_ID, EOS_ID, PAD_ID = 1, 2, 11


@dataclass(frozen=True)
class TinyModelSpec:
    """Widths of the tiny model; the defaults run a 5 s clip end to end in ~0.1 s on 2 cores."""

    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    audio_hidden_size: int = 64
    audio_layers: int = 2
    audio_heads: int = 2
    max_position_embeddings: int = 32768
    text_intermediate_size: int | None = None
    """The decoder's MLP width; by default twice its hidden size."""


def voxtral_config(vocab_size: int, spec: TinyModelSpec, **text_options: Any) -> Any:
    """The ``VoxtralConfig`` of a small Voxtral with ``spec``'s widths (the kit's tiny model
    and the demo model, which adds its own ``text_options``)."""
    from transformers import VoxtralConfig

    return VoxtralConfig(
        audio_config={
            "model_type": "voxtral_encoder",
            "hidden_size": spec.audio_hidden_size,
            "intermediate_size": 4 * spec.audio_hidden_size,
            "num_hidden_layers": spec.audio_layers,
            "num_attention_heads": spec.audio_heads,
            "num_mel_bins": 128,
            "max_source_positions": 1500,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size or 2 * spec.text_hidden_size,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_hidden_size // spec.text_heads,
            "max_position_embeddings": spec.max_position_embeddings,
            **text_options,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
        },
        audio_token_id=AUDIO_TOKEN_ID,
    )


def build_tiny_model(
    folder: str | Path,
    version: TokenizerVersion = "v7",
    vocabulary: Vocabulary = "tiny",
    seed: int = 0,
    spec: TinyModelSpec | None = None,
) -> Path:
    """Write a tiny random Voxtral (model, processor, tokenizer) into ``folder`` and return it."""
    # Heavy imports stay inside: importing the test kit must not load torch.
    import torch
    from transformers import (
        GenerationConfig,
        VoxtralForConditionalGeneration,
        VoxtralProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.tokenization_mistral_common import MistralCommonBackend

    spec = spec or TinyModelSpec()
    folder = Path(folder)
    tekken_path = write_tekken(folder, version, vocabulary)
    vocab_size = json.loads(tekken_path.read_text("utf-8"))["config"]["default_vocab_size"]

    config = voxtral_config(vocab_size, spec)
    torch.manual_seed(seed)
    model = VoxtralForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID
    )
    model.save_pretrained(folder)

    feature_extractor = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
    )
    tokenizer = MistralCommonBackend.from_pretrained(str(folder))
    VoxtralProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(
        folder
    )
    return folder
