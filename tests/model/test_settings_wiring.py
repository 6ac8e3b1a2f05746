"""Worker and sampling options come from the settings layers (file, environment, flags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import ConfigError, load_settings
from assistant.model.worker import ModelWorker


def test_speed_options_reach_the_worker(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefix reuse, cache budget, static cache and batch size set by environment reach
    the model thread."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_MODEL__PREFIX_REUSE", "false")
    monkeypatch.setenv("VOXTRAL_ASSISTANT_MODEL__CACHE_BUDGET_BYTES", "12345")
    monkeypatch.setenv("VOXTRAL_ASSISTANT_MODEL__STATIC_CACHE_TOKENS", "2048")
    monkeypatch.setenv("VOXTRAL_ASSISTANT_MODEL__MAX_BATCH", "1")
    settings = load_settings({"model": {"id": str(tiny_model_dir), "device": "cpu"}})
    worker = ModelWorker.load(settings=settings.model)
    try:
        assert worker.settings.prefix_reuse is False
        assert worker.settings.cache_budget_bytes == 12345
        assert worker.settings.static_cache_tokens == 2048
        assert worker.settings.compile_backend is None
        assert worker.settings.max_batch == 1
    finally:
        worker.close()


def test_sampling_comes_from_settings() -> None:
    """Chat sampling follows settings.model; an explicit token limit wins."""
    settings = load_settings({"model": {"temperature": 0.7, "top_p": 0.8, "max_new_tokens": 64}})
    params = settings.model.generation_params()
    assert (params.temperature, params.top_p, params.max_new_tokens) == (0.7, 0.8, 64)
    assert settings.model.generation_params(max_new_tokens=5).max_new_tokens == 5


def test_compile_without_static_cache_is_refused_up_front() -> None:
    """Asking to compile without static caches is a settings error, before any model loads."""
    with pytest.raises(ConfigError, match="static_cache_tokens"):
        load_settings({"model": {"compile_backend": "inductor"}})
