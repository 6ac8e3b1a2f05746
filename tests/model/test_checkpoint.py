"""resolve_checkpoint: a complete checkpoint from a folder or the hub cache, or a clear error."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants
import pytest

from assistant.model.checkpoint import (
    CHECKPOINT_FILES,
    ModelNotFoundError,
    missing_files,
    resolve_checkpoint,
)
from assistant.model.loading import load_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache that snapshot_download reads, under HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    cache.mkdir()
    # huggingface_hub reads HF_HUB_CACHE once, at import: the environment is too late here.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def use_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Go online (HF_HUB_OFFLINE=0) with ``endpoint`` as the hub."""
    # Like HF_HUB_CACHE, huggingface_hub reads these once, at import.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


class _Answer(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def answering_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Online, with a hub on loopback that answers (the downloads themselves are faked)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    use_hub(monkeypatch, endpoint)
    yield endpoint
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Online, with a hub on loopback that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel completes the handshakes; nobody ever reads or replies
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    use_hub(monkeypatch, endpoint)
    yield endpoint
    listener.close()


@pytest.fixture
def closed_hub(monkeypatch: pytest.MonkeyPatch) -> str:
    """Online, with a hub on a loopback port where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    use_hub(monkeypatch, endpoint)
    return endpoint


def resolve_in_time(model_id: str, limit_s: float) -> tuple[BaseException | None, float]:
    """``resolve_checkpoint(model_id)`` in a thread: what it raised, and after how long.

    Fails the test when it has not returned within ``limit_s`` (the thread is abandoned).
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            resolve_checkpoint(model_id)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert outcome, f"still waiting for the hub after {limit_s:g} s"
    return outcome[0], time.monotonic() - started


def cache_snapshot(cache: Path, repo_id: str, source: Path, names: list[str]) -> Path:
    """Put the files ``names`` of ``source`` in ``cache`` as the main snapshot of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in names:
        shutil.copy(source / name, snapshot / name)
    return snapshot


def copy_folder(source: Path, target: Path, names: list[str]) -> Path:
    """A folder holding the files ``names`` of ``source``."""
    target.mkdir()
    for name in names:
        shutil.copy(source / name, target / name)
    return target


def all_files(folder: Path) -> list[str]:
    """The names of the files in ``folder``."""
    return sorted(path.name for path in folder.iterdir())


def record_downloads(
    monkeypatch: pytest.MonkeyPatch, fill_from: Path | None
) -> list[dict[str, Any]]:
    """Replace the network part of snapshot_download: record each call and, with ``fill_from``,
    copy that folder's files into the cached snapshot as a download would."""
    real: Callable[..., str] = huggingface_hub.snapshot_download
    calls: list[dict[str, Any]] = []

    def download(repo_id: str, **options: Any) -> str:
        if options.get("local_files_only"):
            return real(repo_id, **options)
        calls.append({"repo_id": repo_id, **options})
        snapshot = Path(
            real(repo_id, allow_patterns=options["allow_patterns"], local_files_only=True)
        )
        if fill_from is not None:
            for name in all_files(fill_from):
                shutil.copy(fill_from / name, snapshot / name)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    return calls


def test_partial_cache_offline_names_what_is_missing(hub_cache: Path, tiny_model_dir: Path) -> None:
    """A cached snapshot holding only config and tekken fails offline, naming the missing files."""
    cache_snapshot(hub_cache, "org/name", tiny_model_dir, ["config.json", "tekken.json"])
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_checkpoint("org/name")
    message = str(exc.value)
    assert "only partly in the local Hugging Face cache" in message
    assert "preprocessor_config.json" in message
    assert "model.safetensors" in message
    assert "hf download org/name" in message
    assert "\n" not in message


def test_complete_cached_snapshot_resolves_and_loads(hub_cache: Path, tiny_model_dir: Path) -> None:
    """A complete snapshot in the cache is returned as is, and load_model loads it."""
    snapshot = cache_snapshot(hub_cache, "org/name", tiny_model_dir, all_files(tiny_model_dir))
    assert resolve_checkpoint("org/name") == snapshot
    loaded = load_model("org/name", "cpu", "float32")
    assert loaded.report.folder == snapshot


def test_partial_cache_online_downloads_the_rest(
    monkeypatch: pytest.MonkeyPatch, hub_cache: Path, tiny_model_dir: Path, answering_hub: str
) -> None:
    """Online, a partial snapshot is completed with the checkpoint's files, then used."""
    snapshot = cache_snapshot(hub_cache, "org/name", tiny_model_dir, ["config.json", "tekken.json"])
    downloads = record_downloads(monkeypatch, fill_from=tiny_model_dir)
    assert resolve_checkpoint("org/name") == snapshot
    assert downloads == [{"repo_id": "org/name", "allow_patterns": CHECKPOINT_FILES}]
    assert missing_files(snapshot) == []


def test_partial_cache_still_incomplete_after_download_is_refused(
    monkeypatch: pytest.MonkeyPatch, hub_cache: Path, tiny_model_dir: Path, answering_hub: str
) -> None:
    """When the hub brings nothing (unreachable, or no such files), the missing files are named."""
    cache_snapshot(hub_cache, "org/name", tiny_model_dir, ["config.json", "tekken.json"])
    downloads = record_downloads(monkeypatch, fill_from=None)
    with pytest.raises(ModelNotFoundError, match=r"still incomplete.*preprocessor_config\.json"):
        resolve_checkpoint("org/name")
    assert len(downloads) == 1


def test_a_hub_that_never_answers_is_reported_within_seconds(
    monkeypatch: pytest.MonkeyPatch, hub_cache: Path, silent_hub: str
) -> None:
    """Online, a hub that takes connections but never answers fails fast, saying what to do."""
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    error, took_s = resolve_in_time("org/name", limit_s=15)
    assert took_s < 4
    assert isinstance(error, ModelNotFoundError)
    assert str(error) == (
        f"model org/name is not in the local Hugging Face cache and the Hugging Face hub at "
        f"{silent_hub} could not be reached (no answer within 1 s): download it where there is "
        "network with `hf download org/name` (it lands in the Hugging Face cache, "
        "~/.cache/huggingface), or pass --model with the path of a local folder that holds the "
        "checkpoint; on a machine without network, set HF_HUB_OFFLINE=1 so that models come "
        "from the cache without asking the hub"
    )


def test_a_refused_connection_to_the_hub_says_it_could_not_be_reached(
    hub_cache: Path, closed_hub: str
) -> None:
    """Online, a hub whose port is closed is named as unreachable, with the way out."""
    error, took_s = resolve_in_time("org/name", limit_s=15)
    assert took_s < 4
    assert isinstance(error, ModelNotFoundError)
    message = str(error)
    assert f"the Hugging Face hub at {closed_hub} could not be reached (" in message
    assert "Connection refused" in message
    assert "hf download org/name" in message and "--model" in message
    assert "HF_HUB_OFFLINE=1" in message and "\n" not in message


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


def test_folder_without_weights_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A local folder holding all but the weights (Mistral's consolidated file does not count)."""
    names = [name for name in all_files(tiny_model_dir) if not name.endswith(".safetensors")]
    folder = copy_folder(tiny_model_dir, tmp_path / "checkpoint", names)
    (folder / "consolidated.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"not a complete checkpoint.*model\.safetensors"):
        resolve_checkpoint(folder)


def test_sharded_weights_need_every_shard(tmp_path: Path, tiny_model_dir: Path) -> None:
    """With an index, each shard it names must be there; a missing one is named."""
    names = [name for name in all_files(tiny_model_dir) if not name.endswith(".safetensors")]
    folder = copy_folder(tiny_model_dir, tmp_path / "checkpoint", names)
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {"a.weight": shards[0], "b.weight": shards[1]}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / shards[0]).write_bytes(b"")
    assert missing_files(folder) == [shards[1]]


def test_processor_config_without_feature_extractor_is_not_enough(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A processor_config.json with no feature extractor inside does not count as one."""
    folder = copy_folder(tiny_model_dir, tmp_path / "checkpoint", all_files(tiny_model_dir))
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "X"}))
    assert missing_files(folder) == ["preprocessor_config.json"]


class _NotFound(_Answer):
    def do_GET(self) -> None:
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_failed_download_says_what_the_hub_said_and_keeps_the_cause(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub that refuses the download (no such repo) is named with its error's type and first
    line, and the original exception stays chained for the log."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    use_hub(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with pytest.raises(ModelNotFoundError) as refused:
            resolve_checkpoint("org/absent")
    finally:
        server.shutdown()
        server.server_close()
    message = str(refused.value)
    assert "could not be downloaded (RepositoryNotFoundError: " in message
    assert "hf download org/absent" in message
    assert refused.value.__cause__ is not None
