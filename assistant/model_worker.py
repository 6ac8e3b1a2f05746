"""The only code that touches the model: one model thread, async callers get event streams.

The public face of ``assistant.model``; the implementation is ``assistant.model.worker``.
"""

from assistant.model.worker import (
    DEFAULT_CONTEXT_TOKENS,
    GREEDY,
    TRANSCRIPTION_MAX_TOKENS,
    ContextOverflowError,
    GenerationParams,
    ModelError,
    ModelWorker,
    ResponseStream,
    WorkerOptions,
)

__all__ = [
    "DEFAULT_CONTEXT_TOKENS",
    "GREEDY",
    "TRANSCRIPTION_MAX_TOKENS",
    "ContextOverflowError",
    "GenerationParams",
    "ModelError",
    "ModelWorker",
    "ResponseStream",
    "WorkerOptions",
]
