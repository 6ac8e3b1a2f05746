"""The OpenAI-compatible API of ``serve``: the assistant's model for any OpenAI client.

``POST /v1/chat/completions`` (whole or streamed as server-sent events) and ``GET /v1/models``
go straight to the model backend: no server tools, no history
(OpenAI's API is stateless: the client sends the conversation each time). ``HttpApi`` routes
here after its access checks (Host, Origin, token) and reads the body within its limits; this
module parses it (``openai_wire``), runs the model and answers. A request's
``X-Session-Id`` header (what ``RemoteWorker`` sends) becomes the conversation id, so the local
worker reuses that conversation's KV cache from one request to the next.
``POST /v1/audio/transcriptions`` is served by ``transcriptions.py`` (long recordings).

A client that disconnects stops its generation; shutdown lets requests finish for the grace
period, then stops them (``503`` or, mid-stream, an error event).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from websockets.http11 import Request, Response

from assistant import events as ev
from assistant.audio.io import AudioError, audio_chunk
from assistant.config import GenerationParams
from assistant.conversation.turn import parse_client_tools
from assistant.model.backend import ModelBackend, ResponseStream
from assistant.server.http_edge import HttpConnection, http_response, json_response
from assistant.server.http_stream import ChunkedWriter, sent, sse
from assistant.server.openai_wire import (
    ChatRequest,
    Reply,
    WireError,
    audio_parts,
    decode_audio_data,
    error_json,
    generation_params,
    models_json,
    parse_chat_request,
    to_mistral,
    tool_dicts,
)

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
PATHS = {CHAT_PATH: "POST", MODELS_PATH: "GET"}
"""The paths served here and the one method each takes."""

SESSION_HEADER = "X-Session-Id"
"""A request header naming the conversation (kept KV cache between requests)."""

SHUTTING_DOWN = "the server is shutting down; try again later"

_STATUS = {
    "bad_request": (http.HTTPStatus.BAD_REQUEST, "invalid_request_error"),
    "bad_audio": (http.HTTPStatus.BAD_REQUEST, "invalid_request_error"),
    "context_overflow": (http.HTTPStatus.BAD_REQUEST, "invalid_request_error"),
    "overloaded": (http.HTTPStatus.SERVICE_UNAVAILABLE, "server_error"),
    "model_unavailable": (http.HTTPStatus.BAD_GATEWAY, "server_error"),
    "shutting_down": (http.HTTPStatus.SERVICE_UNAVAILABLE, "server_error"),
    "timeout": (http.HTTPStatus.GATEWAY_TIMEOUT, "server_error"),
}
"""HTTP status and OpenAI error type per ``ErrorEvent`` code; others are 500."""


def openai_error(status: http.HTTPStatus, message: str, code: str | None = None) -> Response:
    """An error answer in OpenAI's shape (what the SDK turns into its exception types)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json_response(status, error_json(message, kind, code))


class OpenAiApi:
    """Chat completions and models over one model backend."""

    def __init__(
        self,
        backend: ModelBackend,
        model_name: str,
        params: GenerationParams,
        *,
        respond_timeout_s: float,
    ) -> None:
        self.backend = backend
        self.model_name = model_name
        self.params = params
        self.respond_timeout_s = respond_timeout_s
        self._created = int(time.time())
        self._running: set[ResponseStream] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def in_flight(self) -> int:
        """Chat completions running now."""
        return len(self._running)

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new requests; stop the running ones after ``grace_s``."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            for stream in list(self._running):
                stream.cancel()

    @property
    def paths(self) -> dict[str, str]:
        """The paths served here and the method each takes."""
        return PATHS

    def get(self, path: str) -> Response:
        """``GET /v1/models``."""
        payload = models_json(self.model_name, self._created, self.backend.context_tokens)
        return json_response(http.HTTPStatus.OK, payload)

    @staticmethod
    def unsupported_media(path: str, media_type: str) -> str | None:
        """The 415 message for a POST whose Content-Type this path does not take."""
        return None if media_type == "application/json" else "send application/json"

    async def parse(self, path: str, request: Request, body: bytes) -> ChatJob | Response:
        """Check and decode a POST body (audio included); the 400 answer when it is unusable."""
        if self._closing:
            return openai_error(http.HTTPStatus.SERVICE_UNAVAILABLE, SHUTTING_DOWN)
        try:
            chat = parse_chat_request(body)
            return await self._chat_job(chat, request.headers.get(SESSION_HEADER))
        except (WireError, AudioError) as exc:
            return openai_error(http.HTTPStatus.BAD_REQUEST, str(exc))

    async def answer(self, connection: HttpConnection, job: ChatJob) -> Response:
        """Run a parsed request and answer it."""
        if self._closing:
            return openai_error(http.HTTPStatus.SERVICE_UNAVAILABLE, SHUTTING_DOWN)
        stream = self.backend.respond(
            job.messages,
            tools=job.tools or None,
            params=job.params,
            conversation_id=job.conversation_id,
        )
        return await self._answer(connection, job.chat, stream)

    async def _chat_job(self, chat: ChatRequest, conversation_id: str | None) -> ChatJob:
        audio: dict[tuple[int, int], Any] = {}
        for (i, j), part in audio_parts(chat):
            where = f"messages.{i}.content.{j}"
            data = decode_audio_data(part.input_audio.data, where)
            try:
                # Decoding and resampling a long clip must not stall the other clients.
                audio[(i, j)] = await asyncio.to_thread(audio_chunk, data)
            except AudioError as exc:
                raise WireError(f"{where}.input_audio: {exc}") from None
        try:
            tools = list(parse_client_tools(tool_dicts(chat)).values())
            params = generation_params(chat, self.params)
        except ValueError as exc:
            raise WireError(str(exc)) from None
        return ChatJob(chat, to_mistral(chat, audio), tools, params, conversation_id)

    async def _answer(
        self, connection: HttpConnection, chat: ChatRequest, stream: ResponseStream
    ) -> Response:
        self._running.add(stream)
        self._idle.clear()
        watch = asyncio.create_task(_cancel_when_gone(connection, stream), name="openai-watch")
        deadline = asyncio.get_running_loop().call_later(self.respond_timeout_s, stream.cancel)
        try:
            if chat.stream:
                return await self._stream(connection, chat, stream)
            return await self._whole(chat, stream)
        finally:
            deadline.cancel()
            watch.cancel()
            stream.cancel()  # a no-op once it ended; ends it when this handler is cancelled
            self._running.discard(stream)
            if not self._running:
                self._idle.set()

    async def _whole(self, chat: ChatRequest, stream: ResponseStream) -> Response:
        reply = Reply(self.model_name)
        error: ev.ErrorEvent | None = None
        malformed: list[ev.MalformedToolCall] = []
        done: ev.ResponseDone | None = None
        async for event in stream:
            if isinstance(event, ev.ErrorEvent):
                error = error or event
            elif isinstance(event, ev.MalformedToolCall):
                malformed.append(event)
            elif isinstance(event, ev.ResponseDone):
                done = event
        if done is None or error is not None or done.finish_reason in ("error", "cancelled"):
            return self._failure(error)
        if chat.parallel_tool_calls is False:
            done = dataclasses.replace(done, tool_calls=done.tool_calls[:1])
        return json_response(http.HTTPStatus.OK, reply.completion(done, malformed))

    async def _stream(
        self, connection: HttpConnection, chat: ChatRequest, stream: ResponseStream
    ) -> Response:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        reply = Reply(self.model_name, include_usage=include_usage)
        writer = ChunkedWriter(connection, "text/event-stream; charset=utf-8")
        calls = 0
        async for event in stream:
            failed = isinstance(event, ev.ResponseDone) and event.finish_reason in (
                "error",
                "cancelled",
            )
            if isinstance(event, ev.ErrorEvent) or failed:
                error = event if isinstance(event, ev.ErrorEvent) else None
                if not writer.started:  # nothing sent yet: a real HTTP error status
                    return self._failure(error)
                _, kind, message = self._error_parts(error)
                await writer.write(sse(error_json(message, kind, error.code if error else None)))
                await writer.end()
                return sent()
            if not writer.started:
                writer.start()
                await writer.write(sse(reply.first_chunk()))
            if isinstance(event, ev.ResponseDone):
                if chat.parallel_tool_calls is False:
                    event = dataclasses.replace(event, tool_calls=event.tool_calls[:1])
                for last in reply.last_chunks(event):
                    await writer.write(sse(last))
                await writer.write(sse("[DONE]"))
                await writer.end()
                return sent()
            if isinstance(event, ev.ToolCall):
                calls += 1
                if chat.parallel_tool_calls is False and calls > 1:
                    continue
            piece = reply.event_chunk(event)
            if piece is not None:
                await writer.write(sse(piece))
        return sent()  # unreachable: every stream ends with ResponseDone

    def _error_parts(self, error: ev.ErrorEvent | None) -> tuple[http.HTTPStatus, str, str]:
        if error is None:
            code = "shutting_down" if self._closing else "timeout"
            message = (
                SHUTTING_DOWN
                if self._closing
                else (f"the reply took longer than {self.respond_timeout_s:g} s")
            )
        else:
            code, message = error.code, error.message
        status, kind = _STATUS.get(code, (http.HTTPStatus.INTERNAL_SERVER_ERROR, "server_error"))
        return status, kind, message

    def _failure(self, error: ev.ErrorEvent | None) -> Response:
        status, kind, message = self._error_parts(error)
        extra = {"Retry-After": "1"} if status == http.HTTPStatus.SERVICE_UNAVAILABLE else {}
        body = json.dumps(error_json(message, kind, error.code if error else None)).encode()
        return http_response(status, body, "application/json", extra)


@dataclass(frozen=True, eq=False)
class ChatJob:
    """A checked chat completion request, its audio decoded."""

    chat: ChatRequest
    messages: list[Any]
    tools: list[Any]
    params: GenerationParams
    conversation_id: str | None


async def _cancel_when_gone(connection: HttpConnection, stream: ResponseStream) -> None:
    """Stop the generation when the client hangs up: nobody would read the rest."""
    await connection.client_gone.wait()
    log.info("client hung up: stopping its completion")
    stream.cancel()
