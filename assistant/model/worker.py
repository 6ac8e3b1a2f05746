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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.audio.io import AudioError, AudioSource, audio_chunk
from assistant.config import GenerationParams, ModelSettings
from assistant.events import (
    ErrorEvent,
    ResponseDone,
    Timings,
    Transcription,
    Usage,
)
from assistant.model.backend import (
    DEFAULT_CONTEXT_TOKENS,
    TRANSCRIPTION_MAX_TOKENS,
    ContextOverflowError,
    ModelError,
    ResponseStream,
    split_language,
)
from assistant.model.engine import Engine, Job, Sampling
from assistant.model.guide import ToolCallGuide
from assistant.model.loading import LoadedModel, LoadReport, load_model
from assistant.model.prompting import EncodedPrompt, PromptBuilder, PromptError
from assistant.model.toolcall_parser import JSON_LIST_VERSIONS, ToolCallParser

log = logging.getLogger(__name__)


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
    tools: Sequence[Any] | None = None
    """The tools offered (a call the model writes is guided to be valid for them)."""


class _Stop:
    """Queue item that ends the model thread."""


_QueueItem = list[_Request] | Callable[[], None] | _Stop


class ModelWorker:
    """Voxtral behind one model thread; create with ``ModelWorker.load``."""

    max_clips: int | None = None
    """transformers takes any number of clips per prompt."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        logits_processor_factory: Callable[[int], list[Any]] | None = None,
        settings: ModelSettings | None = None,
    ) -> None:
        from assistant.model.engine import EngineStats
        from assistant.model.fast_decode import make_compile_config, warm_up

        self.settings = settings or ModelSettings()
        """How the model thread works (prefix reuse, caches, batching, the request queue)."""
        self.tokenizer = loaded.tokenizer
        self.load_report: LoadReport = loaded.report
        self._prompts = PromptBuilder(loaded.tokenizer)
        self.tokenizer_version = self._prompts.version
        text_config = loaded.model.config.text_config
        self.context_tokens = min(DEFAULT_CONTEXT_TOKENS, int(text_config.max_position_embeddings))
        tekken = loaded.tokenizer.instruct_tokenizer.tokenizer
        self._eos_id = int(tekken.eos_id)
        self._guide = self._make_guide(tekken)
        self.engine = Engine(
            loaded.model,
            loaded.feature_extractor,
            eos_id=self._eos_id,
            pad_id=int(tekken.pad_id),
            cache_budget_bytes=self.settings.cache_budget_bytes,
            prefix_reuse=self.settings.prefix_reuse,
            logits_processor_factory=logits_processor_factory,
            static_cache_tokens=self.settings.static_cache_tokens,
            compile_config=make_compile_config(self.settings, loaded.report.device),
            encoder_batch_windows=self.settings.encoder_batch_windows,
        )
        if self.settings.compile_backend is not None:
            from mistral_common.protocol.instruct.messages import UserMessage

            warm_up(self.engine, self._prompts.chat([UserMessage(content="Hello")]).tokens)
            self.engine.stats = EngineStats()
        self._requests: queue.Queue[_QueueItem] = queue.Queue()
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve_forever, name="model", daemon=True)
        self._thread.start()

    def _make_guide(self, tekken: Any) -> ToolCallGuide | None:
        """The tool-call guide, where it is on and the tokenizer writes v7 call lists."""
        if not self.settings.guided_tool_calls:
            return None
        if tekken.version.value not in JSON_LIST_VERSIONS:
            log.info("tool calls are not guided: the tokenizer writes name[ARGS]{...} calls")
            return None
        try:
            return ToolCallGuide(tekken, int(tekken.get_special_token("[TOOL_CALLS]")))
        except Exception as exc:  # the model works without it: say so, go on unguided
            log.warning("tool calls are not guided: %s: %s", type(exc).__name__, exc)
            return None

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        settings: ModelSettings | None = None,
        logits_processor_factory: Callable[[int], list[Any]] | None = None,
    ) -> ModelWorker:
        """Load a checkpoint (blocking) and start the model thread.

        ``settings`` (default ``ModelSettings()``) says what to load and how the model thread
        works; ``model``, ``device`` and ``dtype``, when given, override its ``id``, ``device``
        and ``dtype``.
        """
        overrides = {"id": None if model is None else os.fspath(model), "device": device}
        overrides["dtype"] = dtype
        chosen = (settings or ModelSettings()).model_copy(
            update={k: v for k, v in overrides.items() if v is not None}
        )
        return cls(
            load_model(chosen.id, chosen.device, chosen.dtype),
            logits_processor_factory=logits_processor_factory,
            settings=chosen,
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
        speculative: bool = False,
    ) -> ResponseStream:
        """Start a reply to ``messages`` (mistral-common messages); stream its events.

        ``on_progress(done, total)`` is called on this event loop as the prompt's new audio
        windows are encoded (a long clip is encoded ``encoder_batch_windows`` at a time).
        ``speculative``: the input is not confirmed yet (the stream will be adopted or
        cancelled); the generation runs as any other, and its KV cache serves the next request
        of the conversation whatever becomes of it.
        """
        request = self._request(
            _builder(self._prompts, list(messages), tools),
            params or GenerationParams(),
            conversation_id,
            speculative=speculative,
        )
        request.on_progress = on_progress
        request.tools = tools
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
        for request in requests:
            request.tools = tools
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

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until the model thread has served everything queued before this call (False
        if ``timeout_s`` ran out first). For tests and tools that must not overlap with work
        left over from earlier callers, such as transcripts no reply waited for."""
        served = threading.Event()
        self._requests.put(served.set)
        return served.wait(timeout_s)

    def close(self) -> None:
        """Stop the model thread after the requests already queued."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_Stop())
        self._thread.join()

    # --- the model thread ---------------------------------------------------------------------

    def _request(
        self,
        build: Callable[[], EncodedPrompt],
        params: GenerationParams,
        cid: str | None,
        *,
        speculative: bool = False,
    ) -> _Request:
        if self._closed:
            raise RuntimeError("the model worker is closed")
        stream = ResponseStream(asyncio.get_running_loop(), speculative=speculative)
        return _Request(stream, build, params, cid)

    @property
    def waiting_requests(self) -> int:
        """Requests submitted and not yet taken up by the model thread."""
        return self._waiting

    def _submit(self, requests: list[_Request]) -> None:
        with self._waiting_lock:
            limit = self.settings.max_waiting
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
            while len(backlog) < self.settings.max_batch and held is None:
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, _Stop) or callable(more):
                    held = more
                else:
                    backlog.extend(more)
            size = min(self.settings.max_batch, len(backlog))
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
            stream.call_begun = parser.call_begun

        sampling = Sampling(
            max_new_tokens=min(params.max_new_tokens, budget),
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
        )
        job = Job(prompt, sampling, on_token, stream._cancelled, request.conversation_id)
        if self._guide is not None:
            try:
                job.guide = self._guide.row(request.tools)
            except Exception as exc:  # a tool set it cannot compile: this reply goes unguided
                log.warning(
                    "this reply's tool calls are not guided: %s: %s", type(exc).__name__, exc
                )
        if stream.speculative:
            job.adopted = stream._adopted
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
    text, announced = split_language(text, language)
    finish = done.finish_reason if done is not None else "error"
    return Transcription(text=text, language=announced, finish_reason=finish)


def _on_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[[int, int], None]
) -> Callable[[int, int], None]:
    """``callback`` as the model thread may call it: run later on ``loop``."""

    def call(done: int, total: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(callback, done, total)

    return call
