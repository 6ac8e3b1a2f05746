"""Fixtures for the model worker's tests: real speech clips and workers on the tiny model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor

from assistant.config import ModelSettings
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies
from assistant.testing.speech import synthesize, write_wav


class Recorder(LogitsProcessor):
    """Records the prompt ids and the greedy choice of every step, changing nothing."""

    def __init__(self) -> None:
        self.prompt: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Keep the prompt (first call) and this step's argmax."""
        if self.prompt is None:
            self.prompt = input_ids.clone()
        self.steps.append(scores.argmax(-1))
        return scores

    def generated(self, row: int = 0, eos_id: int = 2) -> list[int]:
        """The greedy tokens of ``row``, up to and including ``</s>``."""
        tokens = [int(step[row]) for step in self.steps]
        return tokens[: tokens.index(eos_id) + 1] if eos_id in tokens else tokens


class Recorders:
    """A ``logits_processor_factory`` that gives every generate call a fresh ``Recorder``."""

    def __init__(self) -> None:
        self.calls: list[Recorder] = []

    def __call__(self, batch_size: int) -> list[Any]:
        self.calls.append(Recorder())
        return [self.calls[-1]]


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real espeak-ng speech as WAV files: two short commands and a 35 s (two-window) clip."""
    folder = tmp_path_factory.mktemp("model-clips")
    speech = synthesize("Turn on the kitchen lights please")
    long = np.concatenate([speech, np.zeros(16000 * 33, dtype=np.int16)])
    return {
        "short": Path(write_wav(str(folder / "short.wav"), speech)),
        "other": Path(write_wav(str(folder / "other.wav"), synthesize("What time is it"))),
        "third": Path(write_wav(str(folder / "third.wav"), synthesize("Set a timer"))),
        "long": Path(write_wav(str(folder / "long.wav"), long)),
    }


WorkerFactory = Callable[..., ModelWorker]


@pytest.fixture
def make_worker(tiny_model_factory: Callable[..., Path]) -> Iterator[WorkerFactory]:
    """Load workers on tiny models; all are closed after the test."""
    workers: list[ModelWorker] = []

    def make(
        version: str = "v7",
        factory: Callable[[int], list[Any]] | None = None,
        **options: Any,
    ) -> ModelWorker:
        worker = ModelWorker.load(
            tiny_model_factory(version),
            device="cpu",
            logits_processor_factory=factory,
            settings=ModelSettings(**options),
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


@pytest.fixture
def script() -> ScriptedReplies:
    """An empty script of forced replies."""
    return ScriptedReplies()
