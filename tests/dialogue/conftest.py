"""Fixtures for the dialogue's tests: workers on the tiny model with scripted replies, speech."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies
from assistant.testing.speech import synthesize
from tests.dialogue.house import House

ScriptedWorker = tuple[ModelWorker, ScriptedReplies]


@pytest.fixture(scope="session")
def scripted_workers(
    tiny_model_factory: Callable[..., Path],
) -> Iterator[Callable[[str], ScriptedWorker]]:
    """Workers on the tiny model (one per tokenizer version, shared by the session)."""
    loaded: dict[str, ScriptedWorker] = {}

    def get(version: str = "v7") -> ScriptedWorker:
        if version not in loaded:
            holder: list[ScriptedReplies] = []
            worker = ModelWorker.load(
                tiny_model_factory(version),
                device="cpu",
                logits_processor_factory=lambda n: holder[0].logits_processors(n),
            )
            holder.append(
                ScriptedReplies(worker.tokenizer, default_reply="OK.", default_transcript="hello")
            )
            loaded[version] = (worker, holder[0])
        worker, script = loaded[version]
        # Transcripts that no reply waited for may still run for the test before.
        assert worker.wait_idle(120), "the model thread is still busy with the test before"
        script.reset()
        return worker, script

    yield get
    for worker, _ in loaded.values():
        worker.close()


@pytest.fixture
def scripted(scripted_workers: Callable[[str], ScriptedWorker]) -> ScriptedWorker:
    """The v7 worker (as Voxtral-Mini-3B-2507) with an empty script."""
    return scripted_workers("v7")


@pytest.fixture(scope="session")
def speech() -> Callable[[str], np.ndarray]:
    """Real espeak-ng speech (int16, 16 kHz), synthesized once per text."""
    cache: dict[str, np.ndarray] = {}

    def say(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = synthesize(text)
        return cache[text]

    return say


@pytest.fixture
async def house() -> AsyncIterator[House]:
    """The house's tools in a fresh registry, closed after the test."""
    house = House()
    yield house
    await house.tools.aclose()
