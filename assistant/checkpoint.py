"""Find a Voxtral checkpoint on disk: a local folder, or a hub id in the Hugging Face cache.

Resolving to a local folder first means ``from_pretrained`` never talks to the network itself,
so a missing model fails at once with one sentence instead of hanging in retries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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


class ModelNotFoundError(Exception):
    """The checkpoint is neither a local folder nor available from the hub cache or network."""


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


def resolve_checkpoint(model_id: str | os.PathLike[str]) -> Path:
    """Return a local folder holding the checkpoint ``model_id`` (a folder path or a hub id)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but holds no config.json checkpoint")
        return path
    model_id = str(model_id)
    if not _is_hub_id(model_id):
        raise ModelNotFoundError(
            f"{model_id!r} is neither an existing folder nor a hub id like 'org/name'"
        )

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(model_id, allow_patterns=CHECKPOINT_FILES, local_files_only=True)
        )
    except LocalEntryNotFoundError:
        pass
    if _offline():
        raise ModelNotFoundError(
            f"model {model_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
            + _how_to_get(model_id)
        ) from None
    log.info("downloading %s from the Hugging Face hub", model_id)
    try:
        return Path(snapshot_download(model_id, allow_patterns=CHECKPOINT_FILES))
    except Exception as exc:  # network, auth, missing repo: all end in the same advice
        raise ModelNotFoundError(
            f"model {model_id} could not be downloaded ({type(exc).__name__}): "
            + _how_to_get(model_id)
        ) from None
