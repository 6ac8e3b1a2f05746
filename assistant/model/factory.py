"""Open the model backend that ``settings.model.backend`` names: local weights or a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from assistant.config import ModelSettings
from assistant.model.backend import ModelBackend

if TYPE_CHECKING:
    from assistant.model.remote import RequestExtras


def open_backend(
    model: ModelSettings,
    *,
    logits_processor_factory: Callable[[int], list[Any]] | None = None,
    request_extras: RequestExtras | None = None,
) -> ModelBackend:
    """Load the checkpoint (``local``) or connect to the server (``vllm``); blocking.

    Raises ``ValueError`` (``BackendUnavailableError`` for a server that cannot be reached)
    or ``ModelNotFoundError`` with one sentence. The two hooks are for tests: the first goes
    to the local worker, the second to the remote one.
    """
    if model.backend == "vllm":
        from assistant.model.remote import RemoteWorker

        return RemoteWorker.connect(model, request_extras=request_extras)
    from assistant.model.worker import ModelWorker

    return ModelWorker.load(settings=model, logits_processor_factory=logits_processor_factory)
