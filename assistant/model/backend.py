"""What the layers above the model see of it: the ``ModelBackend`` interface and its stream.

This module imports no torch: the conversation, the servers and the tests type against
``ModelBackend``; ``ModelWorker`` (in-process, one model thread) implements it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from assistant.config import GenerationParams, TranscriptionSettings
from assistant.events import (
    MalformedToolCall,
    ModelEvent,
    ResponseDone,
    Transcription,
)

DEFAULT_CONTEXT_TOKENS = 32_768
TRANSCRIPTION_MAX_TOKENS: int = TranscriptionSettings.model_fields["max_new_tokens"].default
"""A transcription's token limit unless the caller says otherwise (``transcription.*``)."""


class ContextOverflowError(ValueError):
    """The prompt does not fit the model's context window."""


class ModelError(RuntimeError):
    """A request failed on the model thread (raised by ``transcribe``; ``respond`` streams it)."""


class BackendUnavailableError(ValueError):
    """The backend cannot be used at all (a remote server unreachable at start); one sentence."""


_LANGUAGE_PREFIX = re.compile(r"^\s*lang:([a-z]{2})\s*")  # ISO 639-1, as TranscriptionRequest


def split_language(text: str, language: str | None = None) -> tuple[str, str | None]:
    """A transcription's text without the model's ``lang:xx`` announcement, and the language
    (``language`` when one was asked for, else the announced one)."""
    match = _LANGUAGE_PREFIX.match(text)
    if match:
        text, language = text[match.end() :], language or match.group(1).lower()
    return text.strip(), language


GREEDY = GenerationParams(temperature=0.0)


class ResponseStream:
    """Events of one generation, as an async iterator; always ends with ``ResponseDone``.

    The event queue is unbounded by design: it holds at most one event per generated token
    plus a few, so its size is bounded by ``max_new_tokens``. ``on_cancel`` (called once, from
    any thread) lets a backend stop work that a flag alone would not reach, such as an HTTP
    stream.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_cancel: Callable[[], None] | None = None,
        *,
        speculative: bool = False,
    ) -> None:
        self._loop = loop
        self._events: asyncio.Queue[ModelEvent] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._on_cancel = on_cancel
        self.speculative = speculative
        """Started before its input was confirmed: ``adopt`` or ``cancel`` settles it."""
        self._adopted = threading.Event()
        self._finished = False
        self._done_pushed = False
        """Set on the model thread once the final ``ResponseDone`` was handed over."""
        self.call_begun = False
        """Whether the reply has begun a tool call (``[TOOL_CALLS]``; set by the producer, known
        before anyone reads the stream)."""
        self.malformed_calls_seen = 0
        """``MalformedToolCall`` events handed over so far."""

    def cancel(self) -> None:
        """Stop the generation within one decode step; the stream ends ``cancelled``.

        For a speculative stream this is also the discard: its reply was never wanted.
        """
        first = not self._cancelled.is_set()
        self._cancelled.set()
        if first and self._on_cancel is not None:
            self._on_cancel()

    def adopt(self) -> None:
        """Keep a speculative stream: its input was confirmed and its reply is the turn's."""
        self._adopted.set()

    @property
    def adopted(self) -> bool:
        """Whether ``adopt`` was called."""
        return self._adopted.is_set()

    async def aclose(self) -> None:
        """Cancel (if still running) and stop iterating."""
        self.cancel()

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> ModelEvent:
        if self._finished:
            raise StopAsyncIteration
        event = await self._events.get()
        if isinstance(event, ResponseDone):
            self._finished = True
        return event

    async def done(self) -> ResponseDone:
        """Consume the rest of the stream and return its ``ResponseDone``."""
        last: ModelEvent | None = None
        async for event in self:
            last = event
        if not isinstance(last, ResponseDone):
            raise RuntimeError("the response stream was already consumed")
        return last

    def _push(self, event: ModelEvent) -> None:
        """Thread-safe: hand an event to the stream's event loop."""
        if isinstance(event, ResponseDone):
            self._done_pushed = True
        elif isinstance(event, MalformedToolCall):
            self.malformed_calls_seen += 1
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)


class ModelBackend(Protocol):
    """A Voxtral model that answers conversations and transcribes audio."""

    tokenizer: Any
    """mistral-common's ``MistralTokenizer`` of the checkpoint."""
    tokenizer_version: str
    context_tokens: int
    """The most prompt plus reply tokens a request may take."""
    max_clips: int | None
    """Most audio clips one request may hold, the whole history counted (vLLM: 5); None: any."""

    @property
    def waiting_requests(self) -> int:
        """Requests submitted and not yet taken up by the model."""
        ...

    def count_tokens(self, messages: Sequence[Any], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens the conversation would take (audio included)."""
        ...

    def respond(
        self,
        messages: Sequence[Any],
        *,
        tools: Sequence[Any] | None = None,
        params: GenerationParams | None = None,
        conversation_id: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        speculative: bool = False,
    ) -> ResponseStream:
        """Start a reply to ``messages`` (mistral-common messages); stream its events.

        ``on_progress(done, total)`` reports the encoding of a long prompt's audio windows,
        where the backend can see it. ``speculative``: the input is not confirmed yet; the
        caller will ``adopt`` or ``cancel`` the stream, and until then the request must change
        nothing anyone can observe.
        """
        ...

    async def transcribe(
        self, audio: Any, language: str | None = None, *, max_new_tokens: int = ...
    ) -> Transcription:
        """What was said in ``audio``; the language announced when none was given."""
        ...

    async def transcribe_batch(
        self, audios: Sequence[Any], language: str | None = None, *, max_new_tokens: int = ...
    ) -> list[Transcription]:
        """Several clips at once, in order; each result says whether its text was cut off."""
        ...

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's cached state."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...
