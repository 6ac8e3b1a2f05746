"""A real server on 127.0.0.1, port 0, over the tiny Voxtral with scripted replies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import pytest
import soxr
import torch
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from transformers import LogitsProcessor

from assistant.model.worker import ModelWorker
from assistant.server.assistant_server import AssistantServer
from assistant.server.limits import ServerLimits
from assistant.server.realtime import session as realtime_session
from assistant.testing.forced import ForcedTokens, reply_tokens
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


class Script:
    """The replies the tiny model is forced to give: chat replies and transcripts, in order.

    A generation whose prompt holds ``[TRANSCRIBE]`` takes the next transcript; any other takes
    the next chat reply, so concurrent transcription cannot steal a reply. An empty queue
    leaves the model free.
    """

    def __init__(self, worker: ModelWorker) -> None:
        self.worker = worker
        self.replies: deque[list[int]] = deque()
        self.transcripts: deque[list[int]] = deque()
        self.prompts: list[str] = []
        """The text of every chat prompt the model was given, in order (specials kept)."""
        self.transcription_prompts: list[str] = []
        """The same for every transcription prompt."""
        tekken = worker.tokenizer.instruct_tokenizer.tokenizer
        self.transcribe_id = tekken.get_special_token("[TRANSCRIBE]")

    def say(self, text: str | None = None, tool_calls: Sequence[dict[str, Any]] = ()) -> None:
        """Append one chat reply: text and/or tool calls (``{"name", "arguments", "id"}``)."""
        self.replies.append(reply_tokens(self.worker.tokenizer, text, tool_calls))

    def hear(self, text: str) -> None:
        """Append one transcript (what transcription mode will return)."""
        self.transcripts.append(reply_tokens(self.worker.tokenizer, text))

    def processors(self, batch_size: int = 1) -> list[Any]:
        return [_Routed(self)]


class _Routed(LogitsProcessor):
    """Chooses the forced reply at the first step, from the prompt."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.forced: ForcedTokens | None = None
        self.free = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.forced is None and not self.free:
            transcribing = bool((input_ids[0] == self.script.transcribe_id).any())
            tekken = self.script.worker.tokenizer.instruct_tokenizer.tokenizer
            text = tekken.decode(input_ids[0].tolist(), SpecialTokenPolicy.KEEP)
            (self.script.transcription_prompts if transcribing else self.script.prompts).append(
                text
            )
            queue = self.script.transcripts if transcribing else self.script.replies
            if queue:
                self.forced = ForcedTokens([queue.popleft()])
            self.free = self.forced is None
        return scores if self.forced is None else self.forced(input_ids, scores)


@pytest.fixture(scope="session")
def scripted_worker(tiny_model_dir) -> Any:
    """One tiny model worker for all server tests; each test gets a fresh script."""
    holder: dict[str, Script] = {}
    worker = ModelWorker.load(
        tiny_model_dir,
        device="cpu",
        dtype="float32",
        logits_processor_factory=lambda n: holder["script"].processors(n),
    )
    holder["script"] = Script(worker)
    yield worker, holder
    worker.close()


@pytest.fixture
def script(scripted_worker) -> Script:
    """A fresh, empty script of forced replies for this test."""
    worker, holder = scripted_worker
    holder["script"] = Script(worker)
    return holder["script"]


@pytest.fixture
def start_server(scripted_worker) -> Callable[..., Any]:
    """Start servers with the given options; all are shut down after the test."""
    worker, _ = scripted_worker
    servers: list[AssistantServer] = []

    @contextlib.asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[AssistantServer]:
        limits = dataclasses.replace(
            ServerLimits(close_timeout_s=1.0, shutdown_grace_s=2.0), **options.pop("limits", {})
        )
        options.setdefault("tools", ToolRegistry.from_functions([get_weather]))
        server = AssistantServer(worker, port=0, limits=limits, **options)
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
    """A gated tool (cancelled responses wind down within CANCEL_WAIT_S), released after the
    test so that no task outlives it."""
    monkeypatch.setattr(realtime_session, "CANCEL_WAIT_S", CANCEL_WAIT_S)
    gate = Gate()
    yield gate
    gate.release.set()
    await asyncio.sleep(0.05)
