"""Find a Voxtral checkpoint on disk: a local folder, or a hub id in the Hugging Face cache.

Resolving to a local folder first means ``from_pretrained`` never talks to the network itself,
so a missing model fails at once with one sentence instead of hanging in retries. The folder is
checked for every file the loader reads, so a partial download (an interrupted one leaves a
snapshot with a few files) is completed when online, or named file by file, instead of failing
deep inside transformers. Before downloading, the hub gets a few seconds to answer at all: the
hub client waits without a time limit for the first answer, so a machine whose network drops
packets would otherwise sit silent for a long time before failing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from assistant.config import DEMO_MODEL as DEMO_MODEL  # its --model name; re-exported

log = logging.getLogger(__name__)

# Everything transformers + mistral-common need; not Mistral's own duplicate
# consolidated.safetensors (another full copy of the weights).
CHECKPOINT_FILES = [
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "tekken.json",
    "preprocessor_config.json",
    "processor_config.json",
]
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


HUB_PROBE_TIMEOUT_S = 5.0
"""How long the hub has to answer before it is taken to be unreachable; the environment
variable HF_HUB_ETAG_TIMEOUT (seconds, as huggingface_hub reads it) replaces it."""


class ModelNotFoundError(Exception):
    """The checkpoint is neither a local folder nor available from the hub cache or network."""


DEMO_FOLDER = Path(__file__).with_name("demo")
"""Where the package keeps the demo checkpoint (``python -m training ship`` writes it)."""


def demo_checkpoint(folder: Path = DEMO_FOLDER) -> Path:
    """The folder of the shipped demo checkpoint (package data; no network, no cache)."""
    missing = missing_files(folder)
    if missing:
        raise ModelNotFoundError(
            f"the demo model is not installed with this package ({folder} lacks "
            f"{', '.join(missing)}): reinstall voxtral-assistant, or build it with "
            "`python -m training all` from a source checkout"
        )
    return folder


def missing_files(folder: Path) -> list[str]:
    """The files the loader needs that ``folder`` lacks; empty for a complete checkpoint.

    transformers needs config.json, the weights (model.safetensors, or the index and every shard
    it names) and the feature extractor's settings (preprocessor_config.json, or nested in the
    processor_config.json that ``save_pretrained`` writes); mistral-common needs tekken.json.
    """
    missing = [name for name in ("config.json", "tekken.json") if not (folder / name).is_file()]
    if not _has_feature_extractor(folder):
        missing.append("preprocessor_config.json")
    return missing + _missing_weights(folder)


def _has_feature_extractor(folder: Path) -> bool:
    if (folder / "preprocessor_config.json").is_file():
        return True
    try:
        processor = json.loads((folder / "processor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(processor, dict) and bool(
        {"feature_extractor", "audio_processor"} & processor.keys()
    )


def _missing_weights(folder: Path) -> list[str]:
    # transformers takes the single file first, then the sharded layout.
    if (folder / WEIGHTS_FILE).is_file():
        return []
    index = folder / WEIGHTS_INDEX_FILE
    if not index.is_file():
        return [f"{WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE} and its shards)"]
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = {str(shard) for shard in weight_map.values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [f"a readable {WEIGHTS_INDEX_FILE} (it has no weight_map)"]
    return sorted(shard for shard in shards if not (folder / shard).is_file())


def _is_hub_id(model_id: str) -> bool:
    """'org/name' by the hub's own rules, which allow dots ('org/model-v1.1')."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if model_id.count("/") != 1:
        return False
    try:
        validate_repo_id(model_id)
    except HFValidationError:
        return False
    return True


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _how_to_get(model_id: str) -> str:
    return (
        f"download it where there is network with `hf download {model_id}` "
        "(it lands in the Hugging Face cache, ~/.cache/huggingface), "
        "or pass --model with the path of a local folder that holds the checkpoint"
    )


def _probe_timeout_s() -> float:
    try:
        timeout_s = float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return HUB_PROBE_TIMEOUT_S
    return timeout_s if timeout_s > 0 else HUB_PROBE_TIMEOUT_S


def _hub_unreachable(endpoint: str, timeout_s: float) -> str | None:
    """Why the hub at ``endpoint`` gave no answer within ``timeout_s``; None when it answered.

    Any HTTP answer counts, even an error status: the download then reports what the hub said.
    The request runs in a daemon thread because a slow DNS lookup ignores every timeout; a
    thread still waiting for one ends with the process.
    """
    from huggingface_hub.utils import get_session

    outcome: list[Exception | None] = []

    def probe() -> None:
        try:
            # The join below decides; this longer timeout only ends the thread afterwards.
            get_session().head(endpoint, timeout=2 * timeout_s)
        except Exception as exc:  # connection refused, timeout, proxy, TLS: all "unreachable"
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        return f"no answer within {timeout_s:g} s"
    error = outcome[0]
    return None if error is None else f"{type(error).__name__}: {error}"


def _unreachable(model_id: str, where: str, endpoint: str, reason: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {model_id} {where} and the Hugging Face hub at {endpoint} could not be reached "
        f"({reason}): {_how_to_get(model_id)}; on a machine without network, set "
        "HF_HUB_OFFLINE=1 so that models come from the cache without asking the hub"
    )


def _cached_snapshot(model_id: str) -> Path | None:
    """The snapshot of ``model_id`` in the Hugging Face cache, complete or not; no network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(model_id, allow_patterns=CHECKPOINT_FILES, local_files_only=True)
        )
    except LocalEntryNotFoundError as exc:
        # Newer huggingface_hub refuses a snapshot that its cached tree listing shows to be
        # incomplete (IncompleteSnapshotError) and says where that snapshot is.
        partial = getattr(exc, "snapshot_path", None)
        return Path(partial) if partial else None


def resolve_checkpoint(model_id: str | os.PathLike[str]) -> Path:
    """Return a local folder holding the complete checkpoint ``model_id`` (a folder or hub id).

    A hub id comes from the Hugging Face cache; what the cache lacks (an interrupted download)
    is downloaded unless HF_HUB_OFFLINE is set. Raises ``ModelNotFoundError`` naming the files
    that are still missing, or saying that the hub gave no answer (``HUB_PROBE_TIMEOUT_S``).
    ``demo`` (``DEMO_MODEL``) is the checkpoint shipped in the package; a folder of that name
    is ``./demo``.
    """
    if str(model_id) == DEMO_MODEL:
        return demo_checkpoint()
    path = Path(model_id).expanduser()
    if path.is_dir():
        missing = missing_files(path)
        if missing:
            raise ModelNotFoundError(
                f"{path} is a folder but not a complete checkpoint: it lacks {', '.join(missing)} "
                "(`hf download org/name --local-dir FOLDER` fetches a whole one)"
            )
        return path
    model_id = str(model_id)
    if not _is_hub_id(model_id):
        raise ModelNotFoundError(
            f"{model_id!r} is neither an existing folder nor a hub id like 'org/name'"
        )

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cached = _cached_snapshot(model_id)
    missing = missing_files(cached) if cached is not None else []
    if cached is not None and not missing:
        return cached
    where = (
        "is not in the local Hugging Face cache"
        if cached is None
        else f"is only partly in the local Hugging Face cache ({cached} lacks {', '.join(missing)})"
    )
    if _offline():
        raise ModelNotFoundError(
            f"model {model_id} {where} and HF_HUB_OFFLINE is set: " + _how_to_get(model_id)
        )
    endpoint = constants.ENDPOINT
    log.info("downloading %s from the Hugging Face hub at %s", model_id, endpoint)
    unreachable = _hub_unreachable(endpoint, _probe_timeout_s())
    if unreachable is not None:
        raise _unreachable(model_id, where, endpoint, unreachable)
    try:
        folder = Path(snapshot_download(model_id, allow_patterns=CHECKPOINT_FILES))
    except LocalEntryNotFoundError as exc:  # the hub stopped answering, or answers 5xx
        cause = exc.__cause__ or exc
        raise _unreachable(model_id, where, endpoint, _one_line(cause)) from exc
    except Exception as exc:  # auth, missing repo: all end in the same advice
        raise ModelNotFoundError(
            f"model {model_id} could not be downloaded ({_one_line(exc)}): " + _how_to_get(model_id)
        ) from exc
    missing = missing_files(folder)
    if missing:
        # snapshot_download hands back the partial cache when the hub cannot be reached.
        raise ModelNotFoundError(
            f"model {model_id} is still incomplete after asking the hub (it lacks "
            f"{', '.join(missing)}): either the hub could not be reached or the repo is not "
            "a Voxtral checkpoint in transformers format: " + _how_to_get(model_id)
        )
    return folder


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (the hub's errors run over several lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
