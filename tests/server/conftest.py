"""A real server on 127.0.0.1, port 0, over the tiny Voxtral with scripted replies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import soxr

from assistant.config import ServerSettings
from assistant.model.worker import ModelWorker
from assistant.server.assistant_server import AssistantServer
from assistant.testing.forced import ScriptedReplies
from assistant.testing.speech import synthesize
from assistant.tools import ToolRegistry, tool
from tests.server.wire import CANCEL_WAIT_S, Gate


@tool
def get_weather(city: str) -> dict[str, Any]:
    """The current weather in a city.

    Args:
        city: Name of the city.
    """
    return {"city": city, "temperature_c": 21, "sky": "clear"}


@pytest.fixture(scope="session")
def scripted_worker(tiny_model_dir) -> Any:
    """One tiny model worker for all server tests; each test gets a fresh script."""
    holder: dict[str, ScriptedReplies] = {}
    worker = ModelWorker.load(
        tiny_model_dir,
        device="cpu",
        dtype="float32",
        logits_processor_factory=lambda n: holder["script"].logits_processors(n),
    )
    holder["script"] = ScriptedReplies(worker.tokenizer)
    yield worker, holder
    worker.close()


@pytest.fixture
def script(scripted_worker) -> ScriptedReplies:
    """A fresh, empty script of forced replies for this test."""
    worker, holder = scripted_worker
    # Transcripts that no reply waited for may still run for the test before.
    assert worker.wait_idle(120), "the model thread is still busy with the test before"
    holder["script"] = ScriptedReplies(worker.tokenizer)
    return holder["script"]


@pytest.fixture
def start_server(scripted_worker) -> Callable[..., Any]:
    """Start servers with the given options; all are shut down after the test."""
    worker, _ = scripted_worker
    servers: list[AssistantServer] = []

    @contextlib.asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[AssistantServer]:
        settings = {
            "port": 0,
            "close_timeout_s": 1.0,
            "shutdown_grace_s": 2.0,
            "cancel_wait_s": CANCEL_WAIT_S,
            **{k: options.pop(k) for k in ("token", "allowed_origins") if k in options},
            **options.pop("limits", {}),
        }
        options.setdefault("tools", ToolRegistry.from_functions([get_weather]))
        server = AssistantServer(worker, settings=ServerSettings(**settings), **options)
        await server.start()
        servers.append(server)
        try:
            yield server
        finally:
            await server.shutdown()

    return start


@pytest.fixture
async def server(start_server) -> AsyncIterator[AssistantServer]:
    """A server with default limits and the get_weather tool."""
    async with start_server() as running:
        yield running


@pytest.fixture(scope="session")
def speech_16k() -> np.ndarray:
    """Real espeak-ng speech, 16 kHz int16."""
    return synthesize("What is the weather in Paris today?")


@pytest.fixture(scope="session")
def speech_24k(speech_16k) -> np.ndarray:
    """The same speech resampled to 24 kHz (OpenAI's input rate)."""
    return np.asarray(soxr.resample(speech_16k, 16000, 24000), dtype=np.int16)


@pytest.fixture
async def gate(monkeypatch) -> AsyncIterator[Gate]:
    """A gated tool (cancelled responses of ``start_server`` servers wind down within
    CANCEL_WAIT_S), released after the test so that no task outlives it."""
    gate = Gate()
    yield gate
    gate.release.set()
    await asyncio.sleep(0.05)
