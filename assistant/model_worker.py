"""The only code that touches the model: one model thread, async callers get event streams.

The public face of ``assistant.model``: ``ModelWorker`` (``assistant.model.worker``) runs the
model in-process; ``ModelBackend`` (``assistant.model.backend``) is what the layers above use.
"""

from assistant.config import GenerationParams
from assistant.model.backend import (
    DEFAULT_CONTEXT_TOKENS,
    GREEDY,
    TRANSCRIPTION_MAX_TOKENS,
    ContextOverflowError,
    ModelBackend,
    ModelError,
    ResponseStream,
)
from assistant.model.worker import ModelWorker

__all__ = [
    "DEFAULT_CONTEXT_TOKENS",
    "GREEDY",
    "TRANSCRIPTION_MAX_TOKENS",
    "ContextOverflowError",
    "GenerationParams",
    "ModelBackend",
    "ModelError",
    "ModelWorker",
    "ResponseStream",
]
