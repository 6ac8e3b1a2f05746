"""A real Wyoming server on 127.0.0.1 (a free port) over the tiny Voxtral with scripted replies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from assistant.config import DialogueSettings, VadSettings, WyomingSettings
from assistant.server.wyoming import Voices, WyomingServer, WyomingService
from assistant.speech.synthesis import EspeakSynthesizer
from assistant.testing.speech import synthesize
from assistant.tools import ToolRegistry
from tests.server.conftest import get_weather

StartWyoming = Callable[..., Any]


@pytest.fixture
def start_wyoming(scripted_worker) -> StartWyoming:
    """Start Wyoming servers with settings overrides (and ``tools=``); stopped after the test."""
    worker, _ = scripted_worker

    @contextlib.asynccontextmanager
    async def start(
        tools: ToolRegistry | None = None, **overrides: Any
    ) -> AsyncIterator[WyomingServer]:
        settings = WyomingSettings(uri="tcp://127.0.0.1:0", **overrides)
        registry = tools if tools is not None else ToolRegistry.from_functions([get_weather])
        service = WyomingService(
            worker,
            tools=registry,
            voices=Voices(
                {voice: EspeakSynthesizer(voice) for voice in settings.voices or ["en-us"]}
            ),
            settings=settings,
            vad_settings=VadSettings(),
            dialogue_settings=DialogueSettings(),
            model_name="tiny-voxtral",
        )
        server = WyomingServer(service, settings.uri, shutdown_grace_s=2.0)
        await server.start()
        try:
            yield server
        finally:
            await server.shutdown()

    return start


@pytest.fixture
async def wyoming(start_wyoming) -> AsyncIterator[WyomingServer]:
    """A Wyoming server with the default settings and the get_weather tool."""
    async with start_wyoming() as server:
        yield server


@pytest.fixture(scope="session")
def command_16k() -> np.ndarray:
    """A spoken command (espeak-ng), then 1.5 s of silence: its end is clear to a VAD."""
    speech = synthesize("Turn on the kitchen light.")
    return np.concatenate([np.zeros(4000, np.int16), speech, np.zeros(24000, np.int16)])
