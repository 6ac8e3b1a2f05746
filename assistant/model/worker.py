"""The only code that touches the model: one thread, a request queue, async event streams.

``ModelWorker.load`` starts the model thread. ``respond`` / ``respond_batch`` / ``transcribe``
put requests on its queue and return at once; the thread builds prompts (mistral-common),
encodes audio, prefills and decodes (``assistant.model.engine``), and hands events to the caller's
event loop with ``loop.call_soon_threadsafe``. Requests that wait together are served together
(one batched encoder call, one batched ``generate`` where prefixes cannot be reused).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.audio.io import AudioError, AudioSource, audio_chunk
from assistant.config import ModelSettings
from assistant.events import (
    ErrorEvent,
    ModelEvent,
    ResponseDone,
    Timings,
    Transcription,
    Usage,
)
from assistant.model.engine import Engine, Job, Sampling
from assistant.model.loading import LoadedModel, LoadReport, load_model
from assistant.model.prompting import EncodedPrompt, PromptBuilder, PromptError
from assistant.model.toolcall_parser import ToolCallParser

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_TOKENS = 32_768
TRANSCRIPTION_MAX_TOKENS = 1024
_LANGUAGE_PREFIX = re.compile(r"^\s*lang:([a-z]{2})\s*")  # ISO 639-1, as TranscriptionRequest


class ContextOverflowError(ValueError):
    """The prompt does not fit the model's context window."""


class ModelError(RuntimeError):
    """A request failed on the model thread (raised by ``transcribe``; ``respond`` streams it)."""


@dataclass(frozen=True)
class GenerationParams:
    """How a reply is generated; ``temperature`` 0 means greedy decoding."""

    max_new_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 0.95
    seed: int | None = None
    """Seeds sampling for reproducible replies; None leaves the generator as it is."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")

    @classmethod
    def from_settings(
        cls, model: ModelSettings, max_new_tokens: int | None = None
    ) -> GenerationParams:
        """The chat sampling configured in ``settings.model``."""
        return cls(
            max_new_tokens=model.max_new_tokens if max_new_tokens is None else max_new_tokens,
            temperature=model.temperature,
            top_p=model.top_p,
        )


GREEDY = GenerationParams(temperature=0.0)


@dataclass(frozen=True)
class WorkerOptions:
    """Speed settings of the model thread (see the README's *Fast turns*)."""

    prefix_reuse: bool = True
    """Keep each conversation's KV cache and prefill only what is new."""
    cache_budget_bytes: int = 4 * 1024**3
    """Memory for KV caches and clip embeddings; least recently used go first."""
    max_batch: int = 16
    """Most requests served by one batched step."""
    static_cache_tokens: int | None = None
    """Use static KV caches of this many positions (compilable) instead of dynamic ones."""
    compile_backend: str | None = None
    """``torch.compile`` the decode step with this backend (``inductor``); needs static caches."""
    max_waiting: int = 256
    """Most requests waiting for the model thread; more fail at once with ``overloaded``."""
    encoder_batch_windows: int = 16
    """Most 30 s audio windows per encoder call (a long clip is encoded in several)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.max_waiting < 1:
            raise ValueError("max_waiting must be at least 1")
        if self.encoder_batch_windows < 1:
            raise ValueError("encoder_batch_windows must be at least 1")


class ResponseStream:
    """Events of one generation, as an async iterator; always ends with ``ResponseDone``.

    The event queue is unbounded by design: it holds at most one event per generated token
    plus a few, so its size is bounded by ``max_new_tokens``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue[ModelEvent] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._finished = False
        self._done_pushed = False
        """Set on the model thread once the final ``ResponseDone`` was handed over."""

    def cancel(self) -> None:
        """Stop the generation within one decode step; the stream ends ``cancelled``."""
        self._cancelled.set()

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
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)


@dataclass(eq=False)
class _Request:
    """One generation request as it waits on the model thread's queue."""

    stream: ResponseStream
    build: Callable[[], EncodedPrompt]
    params: GenerationParams
    conversation_id: str | None
    submitted_s: float = field(default_factory=time.monotonic)
    on_progress: Callable[[int, int], None] | None = None
    """Called on the caller's event loop with (windows encoded, windows to encode)."""


class _Stop:
    """Queue item that ends the model thread."""


_QueueItem = list[_Request] | Callable[[], None] | _Stop


class ModelWorker:
    """Voxtral behind one model thread; create with ``ModelWorker.load``."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        logits_processor_factory: Callable[[int], list[Any]] | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        from assistant.model.engine import EngineStats
        from assistant.model.fast_decode import make_compile_config, warm_up

        self.options = options or WorkerOptions()
        self.tokenizer = loaded.tokenizer
        self.load_report: LoadReport = loaded.report
        self._prompts = PromptBuilder(loaded.tokenizer)
        self.tokenizer_version = self._prompts.version
        text_config = loaded.model.config.text_config
        self.context_tokens = min(DEFAULT_CONTEXT_TOKENS, int(text_config.max_position_embeddings))
        tekken = loaded.tokenizer.instruct_tokenizer.tokenizer
        self._eos_id = int(tekken.eos_id)
        self.engine = Engine(
            loaded.model,
            loaded.feature_extractor,
            eos_id=self._eos_id,
            pad_id=int(tekken.pad_id),
            cache_budget_bytes=self.options.cache_budget_bytes,
            prefix_reuse=self.options.prefix_reuse,
            logits_processor_factory=logits_processor_factory,
            static_cache_tokens=self.options.static_cache_tokens,
            compile_config=make_compile_config(self.options, loaded.report.device),
            encoder_batch_windows=self.options.encoder_batch_windows,
        )
        if self.options.compile_backend is not None:
            from mistral_common.protocol.instruct.messages import UserMessage

            warm_up(self.engine, self._prompts.chat([UserMessage(content="Hello")]).tokens)
            self.engine.stats = EngineStats()
        self._requests: queue.Queue[_QueueItem] = queue.Queue()
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve_forever, name="model", daemon=True)
        self._thread.start()

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] = "mistralai/Voxtral-Mini-3B-2507",
        *,
        device: str = "auto",
        dtype: str = "auto",
        logits_processor_factory: Callable[[int], list[Any]] | None = None,
        options: WorkerOptions | None = None,
    ) -> ModelWorker:
        """Load a checkpoint (blocking) and start the model thread."""
        return cls(
            load_model(model, device, dtype),
            logits_processor_factory=logits_processor_factory,
            options=options,
        )

    @classmethod
    def from_settings(
        cls,
        model: ModelSettings,
        *,
        logits_processor_factory: Callable[[int], list[Any]] | None = None,
    ) -> ModelWorker:
        """Load the checkpoint, device, dtype and speed options configured in ``settings.model``."""
        options = WorkerOptions(
            prefix_reuse=model.prefix_reuse,
            cache_budget_bytes=model.cache_budget_bytes,
            static_cache_tokens=model.static_cache_tokens,
            compile_backend=model.compile_backend,
            max_batch=model.max_batch,
            encoder_batch_windows=model.encoder_batch_windows,
        )
        return cls.load(
            model.id,
            device=model.device,
            dtype=model.dtype,
            logits_processor_factory=logits_processor_factory,
            options=options,
        )

    # --- public API ----------------------------------------------------------------------------

    def count_tokens(self, messages: Sequence[Any], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens the conversation would take (audio included)."""
        return len(self._prompts.chat(messages, tools).tokens)

    def respond(
        self,
        messages: Sequence[Any],
        *,
        tools: Sequence[Any] | None = None,
        params: GenerationParams | None = None,
        conversation_id: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> ResponseStream:
        """Start a reply to ``messages`` (mistral-common messages); stream its events.

        ``on_progress(done, total)`` is called on this event loop as the prompt's new audio
        windows are encoded (a long clip is encoded ``encoder_batch_windows`` at a time).
        """
        request = self._request(
            _builder(self._prompts, list(messages), tools),
            params or GenerationParams(),
            conversation_id,
        )
        request.on_progress = on_progress
        self._submit([request])
        return request.stream

    def respond_batch(
        self,
        conversations: Sequence[Sequence[Any]],
        *,
        tools: Sequence[Any] | None = None,
        params: GenerationParams | None = None,
        conversation_ids: Sequence[str | None] | None = None,
    ) -> list[ResponseStream]:
        """Start replies to several conversations at once; they share batched model steps."""
        ids = list(conversation_ids or [None] * len(conversations))
        if len(ids) != len(conversations):
            raise ValueError("conversation_ids must have one entry per conversation")
        params = params or GenerationParams()
        requests = [
            self._request(_builder(self._prompts, list(messages), tools), params, cid)
            for messages, cid in zip(conversations, ids, strict=True)
        ]
        self._submit(requests)
        return [r.stream for r in requests]

    async def transcribe(
        self,
        audio: AudioSource,
        language: str | None = None,
        *,
        max_new_tokens: int = TRANSCRIPTION_MAX_TOKENS,
    ) -> Transcription:
        """What was said in ``audio`` (greedy); the language announced when none was given."""
        (result,) = await self.transcribe_batch([audio], language, max_new_tokens=max_new_tokens)
        return result

    async def transcribe_batch(
        self,
        audios: Sequence[AudioSource],
        language: str | None = None,
        *,
        max_new_tokens: int = TRANSCRIPTION_MAX_TOKENS,
    ) -> list[Transcription]:
        """Transcribe several clips together (one batched step where the model thread can).

        Each result says whether its text ended (``stop``) or hit ``max_new_tokens``
        (``length``). Raises ``ModelError`` when any clip fails (unreadable audio included:
        ``bad_audio``); the others are cancelled.
        """
        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
        requests = [
            self._request(_transcription_builder(self._prompts, audio, language), params, None)
            for audio in audios
        ]
        self._submit(requests)
        try:
            return [await _transcription(request.stream, language) for request in requests]
        finally:  # a caller that stops waiting (cancelled task) stops the generations too
            for request in requests:
                request.stream.cancel()

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's cached state (its next turn prefills from scratch)."""
        self._requests.put(lambda: self.engine.forget(conversation_id))

    def close(self) -> None:
        """Stop the model thread after the requests already queued."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_Stop())
        self._thread.join()

    # --- the model thread ---------------------------------------------------------------------

    def _request(
        self, build: Callable[[], EncodedPrompt], params: GenerationParams, cid: str | None
    ) -> _Request:
        if self._closed:
            raise RuntimeError("the model worker is closed")
        return _Request(ResponseStream(asyncio.get_running_loop()), build, params, cid)

    @property
    def waiting_requests(self) -> int:
        """Requests submitted and not yet taken up by the model thread."""
        return self._waiting

    def _submit(self, requests: list[_Request]) -> None:
        with self._waiting_lock:
            limit = self.options.max_waiting
            accepted = self._waiting + len(requests) <= limit
            if accepted:
                self._waiting += len(requests)
        if not accepted:
            for request in requests:
                self._fail(
                    request,
                    "overloaded",
                    f"the model already has {self._waiting} requests waiting (limit {limit}): "
                    "try again shortly",
                )
            return
        self._requests.put(requests)

    def _taken(self, requests: list[_Request]) -> None:
        with self._waiting_lock:
            self._waiting -= len(requests)

    def _serve_forever(self) -> None:
        backlog: collections.deque[_Request] = collections.deque()
        """Requests taken off the queue that did not fit the last batch (served first)."""
        held: _QueueItem | None = None
        """A stop or a callable met while filling a batch: served once the backlog is empty."""
        while True:
            if not backlog:
                item = held if held is not None else self._requests.get()
                held = None
                if isinstance(item, _Stop):
                    return
                if callable(item):
                    try:
                        item()
                    except Exception:  # a bug in a housekeeping call must not stop the thread
                        log.exception("model thread task failed")
                    continue
                backlog.extend(item)
            while len(backlog) < self.options.max_batch and held is None:
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, _Stop) or callable(more):
                    held = more
                else:
                    backlog.extend(more)
            size = min(self.options.max_batch, len(backlog))
            batch = [backlog.popleft() for _ in range(size)]
            self._taken(batch)
            try:
                self._serve(batch)
            except Exception as exc:  # the model thread serves everyone: it must not die
                log.exception("serving a batch failed")
                for request in batch:
                    if not request.stream._done_pushed:
                        self._fail(request, "model_error", f"{type(exc).__name__}: {exc}")

    def _serve(self, requests: list[_Request]) -> None:
        started = time.monotonic()
        jobs: list[tuple[_Request, Job, ToolCallParser]] = []
        for request in requests:
            if request.stream._cancelled.is_set():
                request.stream._push(ResponseDone(text="", finish_reason="cancelled"))
                continue
            try:
                prompt = request.build()
                self._check_context(prompt, request.params)
            except (PromptError, AudioError, ContextOverflowError) as exc:
                code = {PromptError: "bad_request", AudioError: "bad_audio"}.get(
                    type(exc), "context_overflow"
                )
                self._fail(request, code, str(exc))
                continue
            except Exception as exc:  # a bug must not end the model thread: it serves everyone
                log.exception("building the prompt failed")
                self._fail(request, "model_error", f"{type(exc).__name__}: {exc}")
                continue
            parser = ToolCallParser.for_tokenizer(self.tokenizer)
            job = self._job(request, prompt, parser)
            jobs.append((request, job, parser))
        if not jobs:
            return
        try:
            self.engine.run([job for _, job, _ in jobs])
        except Exception as exc:  # the shared audio encoding failed: every caller hears it
            log.exception("generation failed")
            for request, _, _ in jobs:
                self._fail(request, "model_error", f"{type(exc).__name__}: {exc}")
            return
        for request, job, parser in jobs:
            if job.error is not None:
                self._fail(request, "model_error", f"{type(job.error).__name__}: {job.error}")
                continue
            try:
                self._finish(request, job, parser, started)
            except Exception as exc:  # one reply's bug must not cost the others theirs
                log.exception("finishing a reply failed")
                self._fail(request, "model_error", f"{type(exc).__name__}: {exc}")

    def _job(self, request: _Request, prompt: EncodedPrompt, parser: ToolCallParser) -> Job:
        params, stream = request.params, request.stream
        budget = self.context_tokens - len(prompt.tokens)

        def on_token(token: int) -> None:
            for event in parser.feed(token):
                stream._push(event)

        sampling = Sampling(
            max_new_tokens=min(params.max_new_tokens, budget),
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
        )
        job = Job(prompt, sampling, on_token, stream._cancelled, request.conversation_id)
        if request.on_progress is not None:
            job.on_progress = _on_loop(stream._loop, request.on_progress)
        return job

    def _check_context(self, prompt: EncodedPrompt, params: GenerationParams) -> None:
        if len(prompt.tokens) >= self.context_tokens:
            raise ContextOverflowError(
                f"the prompt takes {len(prompt.tokens)} tokens but the context holds "
                f"{self.context_tokens}: drop earlier turns or shorten the audio"
            )

    def _finish(
        self, request: _Request, job: Job, parser: ToolCallParser, started_s: float
    ) -> None:
        cancelled = job.cancelled.is_set()
        hit_eos = bool(job.generated) and job.generated[-1] == self._eos_id
        truncated = not hit_eos and not cancelled
        for event in parser.finish(truncated=truncated):
            request.stream._push(event)
        if cancelled:
            reason = "cancelled"
        elif parser.tool_calls:
            reason = "tool_calls"
        else:
            reason = "length" if truncated else "stop"
        now = time.monotonic()
        first = job.first_token_s
        request.stream._push(
            ResponseDone(
                text=parser.text,
                tool_calls=tuple(parser.tool_calls),
                finish_reason=reason,  # type: ignore[arg-type]
                usage=Usage(
                    audio_s=job.prompt.audio_s,
                    prompt_tokens=len(job.prompt.tokens),
                    audio_tokens=job.prompt.audio_tokens,
                    generated_tokens=len(job.generated),
                ),
                timings=Timings(
                    queue_s=started_s - request.submitted_s,
                    time_to_first_token_s=None if first is None else first - request.submitted_s,
                    total_s=now - request.submitted_s,
                ),
            )
        )

    def _fail(self, request: _Request, code: str, message: str) -> None:
        request.stream._push(ErrorEvent(code=code, message=message))
        request.stream._push(
            ResponseDone(
                text="",
                finish_reason="error",
                timings=Timings(total_s=time.monotonic() - request.submitted_s),
            )
        )


def _builder(
    prompts: PromptBuilder, messages: list[Any], tools: Sequence[Any] | None
) -> Callable[[], EncodedPrompt]:
    def build() -> EncodedPrompt:
        return prompts.chat(messages, tools)

    return build


def _transcription_builder(
    prompts: PromptBuilder, audio: AudioSource, language: str | None
) -> Callable[[], EncodedPrompt]:
    # The audio is converted on the model thread, with the rest of the prompt: requests then
    # reach the model in the order they were made (a long recording's pieces in turn).
    def build() -> EncodedPrompt:
        return prompts.transcription(audio_chunk(audio), language)

    return build


async def _transcription(stream: ResponseStream, language: str | None) -> Transcription:
    """The transcription a request's stream ends with; ``ModelError`` if it failed."""
    done: ResponseDone | None = None
    async for event in stream:
        if isinstance(event, ErrorEvent):
            raise ModelError(f"transcription failed ({event.code}): {event.message}")
        if isinstance(event, ResponseDone):
            done = event
    text = done.text if done is not None else ""
    match = _LANGUAGE_PREFIX.match(text)
    announced = language
    if match:
        text, announced = text[match.end() :], language or match.group(1).lower()
    finish = done.finish_reason if done is not None else "error"
    return Transcription(text=text.strip(), language=announced, finish_reason=finish)


def _on_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[[int, int], None]
) -> Callable[[int, int], None]:
    """``callback`` as the model thread may call it: run later on ``loop``."""

    def call(done: int, total: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(callback, done, total)

    return call
