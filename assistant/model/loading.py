"""Load a Voxtral checkpoint: model, feature extractor and mistral-common tokenizer."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.model.checkpoint import resolve_checkpoint

log = logging.getLogger(__name__)

DTYPES = {"bfloat16", "float16", "float32"}


@dataclass(frozen=True)
class LoadReport:
    """How loading went."""

    folder: Path
    device: str
    dtype: str
    attention: str
    load_s: float
    parameter_bytes: int
    device_memory_bytes: int | None
    """Memory the model holds on the GPU; None on CPU."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """Everything the worker needs from a checkpoint."""

    model: Any
    feature_extractor: Any
    tokenizer: Any
    report: LoadReport


def pick_device(device: str) -> str:
    """``auto`` is CUDA when present (the first GPU), else Apple's MPS when present, else CPU."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA GPU is available")
    if device == "mps" and not has_mps:
        raise ValueError("device 'mps' was asked for but Apple's MPS is not available here")
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    """``auto`` is bfloat16 on a GPU (CUDA or MPS) and float32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto, bfloat16, float16 or float32, not {dtype!r}")
    return getattr(torch, dtype)


def pick_attention(device: str) -> str:
    """Flash attention when installed on a GPU, sdpa otherwise."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_model(
    model: str | os.PathLike[str], device: str = "auto", dtype: str = "auto"
) -> LoadedModel:
    """Load the checkpoint ``model`` (hub id or folder) for inference; blocking."""
    import torch
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from transformers import VoxtralForConditionalGeneration, WhisperFeatureExtractor

    started = time.monotonic()
    folder = resolve_checkpoint(model)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    attention = pick_attention(device)
    tekken = folder / "tekken.json"
    if not tekken.is_file():
        raise ValueError(f"{folder} holds no tekken.json: not a Voxtral checkpoint")
    tokenizer = MistralTokenizer.from_file(str(tekken))
    feature_extractor = WhisperFeatureExtractor.from_pretrained(folder)
    network = VoxtralForConditionalGeneration.from_pretrained(
        folder, dtype=torch_dtype, attn_implementation=attention
    )
    network = network.to(device).eval()  # type: ignore[arg-type]
    network.requires_grad_(False)
    parameter_bytes = sum(p.numel() * p.element_size() for p in network.parameters())
    memory = torch.cuda.memory_allocated(device) if device.startswith("cuda") else None
    report = LoadReport(
        folder=folder,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        attention=attention,
        load_s=time.monotonic() - started,
        parameter_bytes=parameter_bytes,
        device_memory_bytes=memory,
    )
    log.info(
        "loaded %s on %s (%s, %s attention) in %.1f s: %.2f GB of parameters%s",
        folder,
        device,
        report.dtype,
        attention,
        report.load_s,
        parameter_bytes / 1e9,
        f", {memory / 1e9:.2f} GB on the GPU" if memory is not None else "",
    )
    return LoadedModel(network, feature_extractor, tokenizer, report)
