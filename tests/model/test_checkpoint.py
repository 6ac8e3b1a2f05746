"""resolve_checkpoint: a complete checkpoint from a folder or the hub cache, or a clear error."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from assistant.checkpoint import ModelNotFoundError, resolve_checkpoint


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache that snapshot_download reads, under HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    cache.mkdir()
    # huggingface_hub reads HF_HUB_CACHE once, at import: the environment is too late here.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_id_with_a_dot_reaches_the_cache_lookup(hub_cache: Path) -> None:
    """'org/Name-v1.1' is a hub id: offline it is reported as not cached, not as malformed."""
    with pytest.raises(ModelNotFoundError, match="is not in the local Hugging Face cache") as exc:
        resolve_checkpoint("someorg/Voxtral-Mini-3B-2507-v1.1")
    assert "hf download someorg/Voxtral-Mini-3B-2507-v1.1" in str(exc.value)


@pytest.mark.parametrize("model_id", ["org/name.git", "org/../name", "a/b/c", "org/-name"])
def test_malformed_hub_id_is_refused_before_the_cache(hub_cache: Path, model_id: str) -> None:
    """Ids the hub would refuse are named as neither a folder nor a hub id."""
    with pytest.raises(ModelNotFoundError, match="neither an existing folder nor a hub id"):
        resolve_checkpoint(model_id)
