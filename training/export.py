"""Write the trained model as a checkpoint folder that the product loads.

The layout is the one ``assistant/testing/tiny_model.py`` writes and ``from_pretrained`` reads:
``config.json``, ``generation_config.json``, ``model.safetensors``, ``tekken.json`` and the
processor's settings (the 128-bin ``WhisperFeatureExtractor``), and the same weights in
Mistral's format (``params.json``, ``consolidated.safetensors``) for vLLM. Weights are stored
in float16 or bfloat16 when asked (half the size, no Mistral copy; the product computes in
float32 on a CPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch


def export(model: Any, tekken: str | Path, folder: str | Path, dtype: str = "float32") -> Path:
    """Save ``model`` with its tokenizer and feature extractor into ``folder``."""
    from transformers import VoxtralProcessor
    from transformers.tokenization_mistral_common import MistralCommonBackend

    from training.features import feature_extractor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tekken, folder / "tekken.json")
    weights = getattr(torch, dtype)
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())
    copy.generation_config = model.generation_config
    copy.to(weights).eval()
    copy.save_pretrained(folder)
    tokenizer = MistralCommonBackend.from_pretrained(str(folder))
    VoxtralProcessor(feature_extractor=feature_extractor(), tokenizer=tokenizer).save_pretrained(
        folder
    )
    if dtype == "float32":  # vLLM's format: the same weights (the position table is checked)
        from assistant.testing.mistral_format import write_mistral_format

        write_mistral_format(folder)
    return folder


def folder_bytes(folder: str | Path) -> int:
    """Total size of the files in ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
