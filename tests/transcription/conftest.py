"""Workers on the tiny model for long transcriptions, with per-piece forced transcripts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.config import ModelSettings
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies

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
        script = ScriptedReplies()
        for text in transcripts or ():
            script.hear(text)
        if factory is None and transcripts is not None:
            factory = script.logits_processors
        worker = ModelWorker.load(
            tiny_model_dir,
            device="cpu",
            logits_processor_factory=factory,
            settings=ModelSettings(**options),
        )
        script.bind(worker.tokenizer)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()
