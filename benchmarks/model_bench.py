"""Shared set-up of the model benchmarks (turn_latency, decode_throughput, concurrency).

``--size tiny`` is the offline test model (hidden 64, 2 layers); ``--size mini`` is
Voxtral-Mini-3B's real shapes (``VoxtralConfig()`` defaults) with random weights, built directly
on the device: compute does not depend on weight values, so timings are those of the real model.
Replies are forced (``assistant.testing.forced``) to a fixed length so that work is comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT_DIR = Path(__file__).parent / "out"
SENTENCES = [
    "Turn on the kitchen lights please.",
    "What is the weather like today in Paris?",
    "Set a timer for ten minutes for the pasta.",
    "Remind me to call my mother tomorrow morning.",
    "How warm is it in the living room right now?",
    "Switch off all the lights in the bedroom.",
    "Play some quiet music in the office, please.",
    "What time does the bakery around the corner open?",
    "Lock the front door and close the garage.",
    "Add milk, eggs and bread to the shopping list.",
    "How long will it take to drive to the airport?",
    "Set the thermostat to twenty one degrees tonight.",
    "Tell me a short joke about computers.",
    "Is the washing machine finished yet?",
    "Open the blinds in the living room halfway.",
    "What is on my calendar for Friday afternoon?",
]


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """--size, --device, --dtype, --json."""
    parser.add_argument("--size", choices=["tiny", "mini"], default="tiny")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU), float32, bfloat16")
    parser.add_argument("--json", type=Path, help="where to write the figures (default out/)")


def load(size: str, device: str, dtype: str) -> Any:
    """A ``LoadedModel`` of the requested size."""
    from assistant.model.loading import load_model

    if size == "tiny":
        from assistant.testing.tiny_model import build_tiny_model

        folder = build_tiny_model(Path(tempfile.mkdtemp(prefix="bench-tiny-")), "v7", "tiny")
        return load_model(folder, device, dtype)
    return _random_mini(device, dtype)


def _random_mini(device: str, dtype: str) -> Any:
    """Voxtral-Mini-3B's shapes with random weights, created on the device (no 9.5 GB save)."""
    import torch
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from transformers import (
        VoxtralConfig,
        VoxtralForConditionalGeneration,
        VoxtralProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.tokenization_mistral_common import MistralCommonBackend

    from assistant.model.loading import LoadedModel, LoadReport, pick_device, pick_dtype
    from assistant.testing.tekken import write_tekken

    started = time.monotonic()
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    folder = Path(tempfile.mkdtemp(prefix="bench-mini-"))
    tokenizer = MistralTokenizer.from_file(str(write_tekken(folder, "v7", "tekken")))
    config = VoxtralConfig()
    config.text_config.bos_token_id, config.text_config.eos_token_id = 1, 2
    config.text_config.pad_token_id = 11
    with torch.device(device):
        model = VoxtralForConditionalGeneration._from_config(
            config, dtype=torch_dtype, attn_implementation="sdpa"
        ).eval()
    model.requires_grad_(False)
    extractor = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400
    )
    # The reference path of turn_latency loads its processor from the folder.
    backend = MistralCommonBackend.from_pretrained(str(folder))
    VoxtralProcessor(feature_extractor=extractor, tokenizer=backend).save_pretrained(folder)
    report = LoadReport(
        folder=folder,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        attention="sdpa",
        load_s=time.monotonic() - started,
        parameter_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        device_memory_bytes=torch.cuda.memory_allocated(device) if device != "cpu" else None,
    )
    return LoadedModel(model, extractor, tokenizer, report)


def spoken_clips(count: int, speaker: int = 0) -> list[np.ndarray]:
    """``count`` espeak-ng utterances of 3-5 s (int16, 16 kHz), distinct per ``speaker``.

    Speakers get a faint, different dither: equal clips would share cached embeddings.
    """
    from assistant.testing.speech import synthesize

    dither = np.random.default_rng(speaker).integers(-2, 3, size=16000 * 10, dtype=np.int16)
    clips = []
    for i in range(count):
        speech = synthesize(SENTENCES[(i + speaker * count) % len(SENTENCES)], words_per_minute=120)
        clips.append(speech + dither[: len(speech)] if speaker else speech)
    return clips


def forced_reply(tokenizer: Any, tokens: int) -> list[int]:
    """A reply of exactly ``tokens`` tokens (the last one ``</s>``)."""
    from assistant.testing.forced import reply_tokens

    words = " ".join(["the lights are on"] * tokens)
    reply = reply_tokens(tokenizer, words)
    return [*reply[: tokens - 1], reply[-1]]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def machine() -> str:
    """A one-line description of where the figures come from."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores}-core CPU ({platform.processor() or platform.machine()}), no GPU"


def write_json(name: str, explicit: Path | None, figures: dict[str, Any]) -> Path:
    """Write ``figures`` (plus the machine) as JSON; return the path."""
    path = explicit or OUT_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **figures}, indent=2), encoding="utf-8")
    return path
