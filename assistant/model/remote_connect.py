"""Where the model server is and what it serves: checked once, before the first request.

``RemoteOptions`` come from ``settings.model`` (the API key read from the environment variable
``model.api_key_env`` names, and never shown). ``load_tokenizer`` reads the checkpoint's
``tekken.json`` only (the weights stay on the server); ``served_model`` asks ``GET /models``
which model the server serves and how long its context is, and turns every way that can fail
into one ``BackendUnavailableError`` sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from assistant.config import ModelSettings
from assistant.model.backend import DEFAULT_CONTEXT_TOKENS, BackendUnavailableError

NO_API_KEY = "EMPTY"
"""What the SDK sends when no key is configured (vLLM without --api-key takes any)."""


@dataclass(frozen=True)
class RemoteOptions:
    """Where the server is and how to talk to it (from ``settings.model``)."""

    url: str
    """The OpenAI API root, e.g. ``http://127.0.0.1:8001/v1``."""
    api_key: str | None = field(default=None, repr=False)
    """Never in a repr: tracebacks and logs show options."""
    session_header: str = "X-Session-Id"
    max_clips: int | None = None
    max_in_flight: int = 64
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0

    @classmethod
    def from_settings(cls, model: ModelSettings) -> RemoteOptions:
        """The options of ``settings.model``; the API key read from ``api_key_env``."""
        if not model.url:
            raise BackendUnavailableError("the vllm backend needs model.url (--model-url)")
        api_key = None
        if model.api_key_env:
            api_key = os.environ.get(model.api_key_env)
            if not api_key:
                raise BackendUnavailableError(
                    f"model.api_key_env names {model.api_key_env}, which is not set"
                )
        return cls(
            url=model.url.rstrip("/"),
            api_key=api_key,
            session_header=model.session_header,
            max_clips=model.clip_limit,
            max_in_flight=model.max_in_flight,
            connect_timeout_s=model.connect_timeout_s,
            read_timeout_s=model.read_timeout_s,
        )


@dataclass(frozen=True)
class ServedModel:
    """What the server's ``GET /models`` says about the model to use."""

    name: str
    context_tokens: int


def load_tokenizer(model_id: str) -> Any:
    """The ``MistralTokenizer`` of ``model_id`` (a folder, or a hub id: only ``tekken.json``)."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from assistant.model.checkpoint import ModelNotFoundError

    folder = Path(model_id).expanduser()
    if folder.is_dir():
        path = folder / "tekken.json"
        if not path.is_file():
            raise ModelNotFoundError(f"{folder} holds no tekken.json: not a Voxtral checkpoint")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(model_id, "tekken.json"))
        except Exception as exc:  # offline and not cached, no such repo, no network
            raise ModelNotFoundError(
                f"the tokenizer of {model_id} (tekken.json) could not be read from the "
                f"Hugging Face cache or hub ({type(exc).__name__}): run `hf download {model_id} "
                "tekken.json` where there is network, or pass --model FOLDER with it"
            ) from None
    return MistralTokenizer.from_file(str(path))


def served_model(options: RemoteOptions, model_id: str) -> ServedModel:
    """Ask ``GET {url}/models`` (blocking); ``BackendUnavailableError`` in one sentence."""
    headers = {"Authorization": f"Bearer {options.api_key or NO_API_KEY}"}
    where = f"the model server at {options.url}"
    try:
        response = httpx.get(
            f"{options.url}/models", headers=headers, timeout=options.connect_timeout_s
        )
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(
            f"cannot reach {where} ({type(exc).__name__}: {exc}): is vLLM running there? "
            "check --model-url"
        ) from None
    if response.status_code in (401, 403):
        raise BackendUnavailableError(
            f"{where} refused the API key ({response.status_code}): set model.api_key_env to "
            "the environment variable that holds it"
        )
    try:
        response.raise_for_status()
        names = {entry["id"]: entry for entry in response.json()["data"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        raise BackendUnavailableError(
            f"{where} does not answer GET /models like an OpenAI-compatible API "
            f"(HTTP {response.status_code}): the URL must be its API root, such as "
            "http://HOST:PORT/v1"
        ) from None
    if model_id in names:
        name = model_id
    elif len(names) == 1:
        name = next(iter(names))
    else:
        raise BackendUnavailableError(
            f"{where} serves {sorted(names) or 'no model'}, none named {model_id}: serve "
            "exactly one model there, or name it after model.id"
        )
    context = names[name].get("max_model_len") if isinstance(names[name], dict) else None
    return ServedModel(name, int(context) if context else DEFAULT_CONTEXT_TOKENS)
