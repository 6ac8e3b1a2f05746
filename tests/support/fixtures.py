"""Pytest fixtures for the offline Voxtral test kit (load with ``pytest_plugins``).

Models are built once per test run (session scope) into a temporary folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant.testing.tekken import TokenizerVersion, Vocabulary
from assistant.testing.tiny_model import build_tiny_model
from tests.support.mqtt import MosquittoBroker

ModelFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory) -> ModelFactory:
    """Build (once per combination and test run) a tiny Voxtral folder and return its path."""
    built: dict[tuple[str, str, int], Path] = {}

    def factory(
        version: TokenizerVersion = "v7", vocabulary: Vocabulary = "tiny", seed: int = 0
    ) -> Path:
        key = (version, vocabulary, seed)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"voxtral-{version}-{vocabulary}-{seed}")
            built[key] = build_tiny_model(folder, version, vocabulary, seed)
        return built[key]

    return factory


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_factory: ModelFactory) -> Path:
    """The default tiny model: v7 tokenizer (as Voxtral-Mini-3B-2507), tiny vocabulary."""
    return tiny_model_factory("v7", "tiny")


@pytest.fixture
def mqtt_broker() -> Iterator[MosquittoBroker]:
    """A real mosquitto on a free 127.0.0.1 port (anonymous access), stopped after the test."""
    with MosquittoBroker() as broker:
        yield broker
