"""Workers on the tiny model for long transcriptions, with per-piece forced transcripts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.model.worker import ModelWorker, WorkerOptions
from assistant.testing.forced_file import ForcedScript

WorkerFactory = Callable[..., ModelWorker]


@pytest.fixture
def make_worker(tiny_model_dir: Path) -> Iterator[WorkerFactory]:
    """Load tiny-model workers: ``factory`` gives the logits processors of each generate call
    (``transcripts`` forces one transcript per piece, in order); all closed after the test."""
    workers: list[ModelWorker] = []

    def make(
        factory: Callable[[int], list[Any]] | None = None,
        transcripts: list[str] | None = None,
        **options: Any,
    ) -> ModelWorker:
        played: list[Callable[[int], list[Any]]] = []
        if factory is None and transcripts is not None:

            def factory(batch_size: int) -> list[Any]:
                return played[0](batch_size)

        worker = ModelWorker.load(
            tiny_model_dir,
            device="cpu",
            logits_processor_factory=factory,
            options=WorkerOptions(**options),
        )
        if transcripts is not None:
            played.append(ForcedScript(transcripts=transcripts).factory(worker.tokenizer))
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()
