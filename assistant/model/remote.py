"""Voxtral on a vLLM server (or any OpenAI-compatible one), behind the ``ModelBackend`` API.

``RemoteWorker.connect`` reads the tokenizer (``tekken.json`` of ``model.id``) and asks the
server's ``/models`` which model it serves and how long its context is (``remote_connect``); an
unreachable server fails there, in one sentence. Each reply is one streamed
``POST /chat/completions`` in a task of its own (vLLM batches concurrent requests itself); its
chunks become the local worker's events (``remote_stream.ChunkReader``). Cancelling the
``ResponseStream`` cancels that task, which closes the HTTP stream, and vLLM aborts the
generation when it sees the connection go.

Failures end the stream with an ``ErrorEvent``: ``bad_request`` (the server refused the request,
its message kept), ``model_unavailable`` (no connection, or it broke mid-reply), ``overloaded``
(too many requests waiting here, or the server said 429/503), ``model_error`` (anything else).
The next request simply tries again: a server that comes back is used again.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from assistant.config import GenerationParams, ModelSettings
from assistant.events import ErrorEvent, ResponseDone, Timings, Transcription, Usage
from assistant.model.backend import (
    TRANSCRIPTION_MAX_TOKENS,
    ModelError,
    ResponseStream,
    split_language,
)
from assistant.model.prompting import EncodedPrompt, PromptBuilder, PromptError
from assistant.model.remote_connect import (
    NO_API_KEY,
    RemoteOptions,
    ServedModel,
    load_tokenizer,
    served_model,
)
from assistant.model.remote_request import (
    chat_body,
    count_clips,
    openai_messages,
    session_headers,
)
from assistant.model.remote_stream import ChunkReader
from assistant.model.toolcall_parser import ToolCallParser

log = logging.getLogger(__name__)

RequestKind = Literal["chat", "transcription"]
RequestExtras = Callable[..., Mapping[str, Any]]
"""Extra JSON fields for each request, by kind (a test hook: ``vllm_xargs`` forced replies):
called with the kind, plus ``speculation=<stream>`` for a speculative chat request."""

MAX_WAITING = 256
"""Requests waiting for a free slot (``max_in_flight``); more fail at once with ``overloaded``,
like the local worker's queue."""


@dataclass(eq=False)
class _LoopState:
    """The HTTP client and the in-flight slots of one event loop (they cannot be shared)."""

    client: Any
    slots: asyncio.Semaphore


class RemoteWorker:
    """The ``ModelBackend`` of a model served over the OpenAI API; build with ``connect``."""

    def __init__(
        self,
        options: RemoteOptions,
        tokenizer: Any,
        served: ServedModel,
        *,
        request_extras: RequestExtras | None = None,
    ) -> None:
        self.options = options
        self.tokenizer = tokenizer
        self.served = served
        self.context_tokens = served.context_tokens
        self.max_clips = options.max_clips
        self._prompts = PromptBuilder(tokenizer)
        self.tokenizer_version = self._prompts.version
        self._eos_id = int(tokenizer.instruct_tokenizer.tokenizer.eos_id)
        self._extras = request_extras
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._closed = False

    @classmethod
    def connect(
        cls, model: ModelSettings, *, request_extras: RequestExtras | None = None
    ) -> RemoteWorker:
        """Read the tokenizer and check the server (blocking)."""
        options = RemoteOptions.from_settings(model)
        tokenizer = load_tokenizer(model.id)
        served = served_model(options, model.id)
        log.info(
            "model %s on %s (context %d tokens, at most %s clips per request)",
            served.name,
            options.url,
            served.context_tokens,
            options.max_clips or "any number of",
        )
        return cls(options, tokenizer, served, request_extras=request_extras)

    def _chat_extras(self, stream: ResponseStream) -> Mapping[str, Any] | None:
        if self._extras is None:
            return None
        if stream.speculative:
            return self._extras("chat", speculation=stream)
        return self._extras("chat")

    # --- ModelBackend ----------------------------------------------------------------------

    @property
    def waiting_requests(self) -> int:
        """Requests waiting for one of the ``max_in_flight`` slots."""
        return self._waiting

    def count_tokens(self, messages: Sequence[Any], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens the conversation would take, counted by the local tokenizer."""
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

        ``on_progress`` is never called: the server does not report its encoding.
        ``speculative``: the input is not confirmed yet; the request goes to the server at once
        and its events wait in the stream until the caller adopts it, or cancels it (which
        closes the HTTP stream; the server's prefix cache is keyed by content, so nothing it
        holds can be wrong).
        """
        if self._closed:
            raise RuntimeError("the remote worker is closed")
        loop = asyncio.get_running_loop()
        task: asyncio.Task[None] | None = None

        def stop() -> None:
            if task is not None:
                loop.call_soon_threadsafe(task.cancel)

        stream = ResponseStream(loop, on_cancel=stop, speculative=speculative)
        submitted_s = time.monotonic()
        if self._waiting >= MAX_WAITING:
            _fail(
                stream,
                "overloaded",
                f"{self._waiting} requests already wait for the model server: try again shortly",
                submitted_s,
            )
            return stream
        waiting = _Waiting(self)
        reply = self._respond(
            stream, list(messages), tools, params or GenerationParams(), conversation_id, waiting
        )
        task = loop.create_task(reply, name=f"remote-reply-{conversation_id or 'oneshot'}")
        self._tasks.add(task)

        def ended(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            waiting.done()
            # A task cancelled before it ran (or while it ran) still ends its stream.
            if not stream._done_pushed:
                stream._push(
                    ResponseDone("", finish_reason="cancelled", timings=_since(submitted_s))
                )

        task.add_done_callback(ended)
        return stream

    async def transcribe(
        self,
        audio: Any,
        language: str | None = None,
        *,
        max_new_tokens: int = TRANSCRIPTION_MAX_TOKENS,
    ) -> Transcription:
        """``POST /audio/transcriptions`` (greedy); the ``lang:xx`` announcement split off."""
        wav = await asyncio.to_thread(_wav_bytes, audio)
        state = self._state()
        extra: dict[str, Any] = {"max_completion_tokens": max_new_tokens}
        for key, value in (self._extras("transcription") if self._extras else {}).items():
            # A multipart form: nested values travel as JSON text (vLLM parses them back).
            extra[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        options: dict[str, Any] = {"language": language} if language else {}
        try:
            async with state.slots:
                result = await state.client.audio.transcriptions.create(
                    model=self.served.name,
                    file=("speech.wav", wav, "audio/wav"),
                    temperature=0.0,
                    response_format="json",
                    extra_body=extra,
                    **options,
                )
        except Exception as exc:
            code, message = self._error(exc)
            raise ModelError(f"transcription failed ({code}): {message}") from None
        text, announced = split_language(str(result.text), language)
        return Transcription(text=text, language=announced)

    async def transcribe_batch(
        self,
        audios: Sequence[Any],
        language: str | None = None,
        *,
        max_new_tokens: int = TRANSCRIPTION_MAX_TOKENS,
    ) -> list[Transcription]:
        """The clips as concurrent requests (the server batches them; ``max_in_flight``
        bounds them). Raises ``ModelError`` when any fails; the others are cancelled."""
        tasks = [
            asyncio.ensure_future(self.transcribe(audio, language, max_new_tokens=max_new_tokens))
            for audio in audios
        ]
        try:
            return list(await asyncio.gather(*tasks))
        finally:  # the first failure (or the caller giving up) stops the rest
            for task in tasks:
                task.cancel()

    def forget(self, conversation_id: str) -> None:
        """Nothing to do: the server's prefix cache evicts by itself."""

    def close(self) -> None:
        """Refuse new requests; close the HTTP clients of event loops still running."""
        self._closed = True
        for loop, state in list(self._loops.items()):
            if loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                task = loop.create_task(state.client.close(), name="remote-close")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(state.client.close(), loop)
        self._loops.clear()

    # --- one reply -------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            import openai

            client = openai.AsyncOpenAI(
                base_url=self.options.url,
                api_key=self.options.api_key or NO_API_KEY,
                # A retried stream would repeat text the user already heard.
                max_retries=0,
                timeout=openai.Timeout(
                    self.options.read_timeout_s, connect=self.options.connect_timeout_s
                ),
            )
            state = _LoopState(client, asyncio.Semaphore(self.options.max_in_flight))
            self._loops[loop] = state
        return state

    async def _respond(
        self,
        stream: ResponseStream,
        messages: list[Any],
        tools: Sequence[Any] | None,
        params: GenerationParams,
        conversation_id: str | None,
        waiting: _Waiting,
    ) -> None:
        submitted_s = time.monotonic()
        try:
            state = self._state()
            try:
                await state.slots.acquire()
            finally:
                waiting.done()
            try:
                await self._stream_reply(
                    state, stream, messages, tools, params, conversation_id, submitted_s
                )
            finally:
                state.slots.release()
        except Exception as exc:
            code, message = self._error(exc)
            if code == "model_error":
                log.exception("remote reply failed")
            else:
                log.warning("remote reply failed: %s: %s", code, message)
            if not stream._done_pushed:
                _fail(stream, code, message, submitted_s)

    async def _stream_reply(
        self,
        state: _LoopState,
        stream: ResponseStream,
        messages: list[Any],
        tools: Sequence[Any] | None,
        params: GenerationParams,
        conversation_id: str | None,
        submitted_s: float,
    ) -> None:
        started_s = time.monotonic()
        clips = count_clips(messages)
        if self.max_clips is not None and clips > self.max_clips:
            raise _Refused(
                f"the request holds {clips} audio clips; the model server takes at most "
                f"{self.max_clips} per request (the whole history counts)"
            )
        try:
            prompt = await asyncio.to_thread(self._prompts.chat, messages, tools)
        except PromptError as exc:
            raise _Refused(str(exc)) from None
        budget = self.context_tokens - len(prompt.tokens)
        if budget < 1:
            raise _Refused(
                f"the prompt takes {len(prompt.tokens)} tokens but the context holds "
                f"{self.context_tokens}: drop earlier turns or shorten the audio",
                code="context_overflow",
            )
        wire_messages, wire_tools = await asyncio.to_thread(
            openai_messages, messages, tools, self._prompts.version
        )
        body = chat_body(
            self.served.name,
            wire_messages,
            wire_tools,
            params,
            max_tokens=min(params.max_new_tokens, budget),
            extras=self._chat_extras(stream),
        )
        reader = ChunkReader(ToolCallParser.for_tokenizer(self.tokenizer), self._eos_id)
        first_s: float | None = None
        model, wire, streamed = body.pop("model"), body.pop("messages"), body.pop("stream")
        response = await state.client.chat.completions.create(
            model=model,
            messages=wire,
            stream=streamed,  # the SDK must know it, to hand back a stream
            extra_body=body,
            extra_headers=session_headers(self.options.session_header, conversation_id),
        )
        async with response:
            async for chunk in response:
                events = reader.feed(chunk.to_dict())
                stream.call_begun = stream.call_begun or reader.call_begun
                if events and first_s is None:
                    first_s = time.monotonic()
                for event in events:
                    stream._push(event)
        for event in reader.finish():
            stream._push(event)
        if reader.tool_calls:
            reason: Any = "tool_calls"
        elif reader.finish_reason in ("stop", "length", "tool_calls"):
            reason = "length" if reader.finish_reason == "length" else "stop"
        else:
            raise _Refused(
                f"the model server ended the reply with finish_reason {reader.finish_reason!r}",
                code="model_error",
            )
        now = time.monotonic()
        stream._push(
            ResponseDone(
                text=reader.text,
                tool_calls=tuple(reader.tool_calls),
                finish_reason=reason,
                usage=_usage(prompt, reader),
                timings=Timings(
                    queue_s=started_s - submitted_s,
                    time_to_first_token_s=None if first_s is None else first_s - submitted_s,
                    total_s=now - submitted_s,
                ),
            )
        )

    def _error(self, exc: Exception) -> tuple[str, str]:
        """The ``ErrorEvent`` code and message for a failed request."""
        import openai

        where = f"the model server at {self.options.url}"
        if isinstance(exc, _Refused):
            return exc.code, str(exc)
        if isinstance(exc, openai.APITimeoutError):
            return "model_unavailable", f"{where} did not answer in time ({exc})"
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return "model_unavailable", f"{where} is unreachable ({type(cause).__name__}: {cause})"
        if isinstance(exc, openai.APIStatusError):
            message = _server_message(exc)
            if exc.status_code in (429, 503):
                return "overloaded", f"{where} is busy ({exc.status_code}): {message}"
            if exc.status_code in (400, 413, 422):
                return "bad_request", message
            if exc.status_code in (401, 403):
                return "model_unavailable", f"{where} refused the API key ({exc.status_code})"
            return "model_error", f"{where} answered {exc.status_code}: {message}"
        if isinstance(exc, openai.APIError):  # an error object inside the stream
            return "model_error", f"{where} failed mid-reply: {exc.message}"
        return "model_error", f"{type(exc).__name__}: {exc}"


class _Waiting:
    """One request counted in ``waiting_requests`` until it has a slot (or ended without one)."""

    def __init__(self, worker: RemoteWorker) -> None:
        self._worker = worker
        self._counted = True
        worker._waiting += 1

    def done(self) -> None:
        """Stop counting it (once)."""
        if self._counted:
            self._counted = False
            self._worker._waiting -= 1


class _Refused(Exception):
    """A request that fails before (or without) the server's say-so."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", exc))


def _usage(prompt: EncodedPrompt, reader: ChunkReader) -> Usage:
    generated = reader.completion_tokens
    if generated is None:
        generated = reader.generated_tokens
    return Usage(
        audio_s=prompt.audio_s,
        prompt_tokens=reader.prompt_tokens or len(prompt.tokens),
        audio_tokens=prompt.audio_tokens,
        generated_tokens=generated,
    )


def _since(submitted_s: float) -> Timings:
    return Timings(total_s=time.monotonic() - submitted_s)


def _fail(stream: ResponseStream, code: str, message: str, submitted_s: float) -> None:
    stream._push(ErrorEvent(code=code, message=message))
    stream._push(ResponseDone(text="", finish_reason="error", timings=_since(submitted_s)))


def _wav_bytes(audio: Any) -> bytes:
    """Any audio the assistant accepts, as 16 kHz PCM16 WAV bytes."""
    import soundfile

    from assistant.audio.io import load_audio
    from assistant.events import SAMPLE_RATE_HZ

    buffer = io.BytesIO()
    soundfile.write(buffer, load_audio(audio), SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
