"""The plain-HTTP side of the server: the browser page, ``GET /healthz``, ``POST /v1/respond``
and ``POST /v1/audio/transcriptions`` (``transcriptions.py``).

``HttpApi.process_request`` sees every request on the port first (websockets calls it before
any WebSocket handshake), so the Host, Origin and token checks for ``/v1/realtime`` live here
too. ``POST /v1/respond`` runs one dialogue turn with the server's tools and answers JSON.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from assistant import events as ev
from assistant.audio.io import AudioError, load_audio
from assistant.conversation.dialogue import Dialogue
from assistant.server.http_edge import (
    BodyBudget,
    BodyError,
    HttpConnection,
    error_response,
    host_is_loopback,
    http_response,
    json_response,
    origin_allowed,
    token_valid,
)
from assistant.server.transcriptions import TRANSCRIPTIONS_PATH, TranscriptionsEndpoint

if TYPE_CHECKING:
    from assistant.server.openai_api import OpenAiApi

log = logging.getLogger(__name__)

T = TypeVar("T")

REALTIME_PATH = "/v1/realtime"
RESPOND_PATH = "/v1/respond"

SHUTTING_DOWN = "the server is shutting down; try again later"

PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

AUDIO_CONTENT_TYPES = frozenset(
    {
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/flac",
        "audio/x-flac",
        "audio/ogg",
        "audio/mpeg",
        "application/octet-stream",
    }
)


class RespondText(BaseModel):
    """The JSON body of ``POST /v1/respond``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000)


def page_html() -> bytes:
    """The browser page, shipped inside the package."""
    return resources.files("assistant.server").joinpath("static/index.html").read_bytes()


class HttpApi:
    """Routes plain HTTP requests and guards WebSocket upgrades."""

    def __init__(
        self,
        *,
        token: str | None,
        allowed_origins: Iterable[str],
        health: Callable[[], dict[str, Any]],
        new_dialogue: Callable[[], Dialogue],
        respond_timeout_s: float,
        max_body_bytes_in_flight: int,
        transcriptions: TranscriptionsEndpoint | None = None,
        openai: OpenAiApi | None = None,
    ) -> None:
        self._token = token
        self._openai = openai
        self._allowed_origins = frozenset(o.strip().rstrip("/").lower() for o in allowed_origins)
        self._health = health
        self._new_dialogue = new_dialogue
        self._respond_timeout_s = respond_timeout_s
        self._page = page_html()
        self._turns: set[asyncio.Task[tuple[http.HTTPStatus, dict[str, Any]]]] = set()
        self._closing = False
        self._bodies = BodyBudget(max_body_bytes_in_flight)
        self._transcriptions = transcriptions

    @property
    def turns_in_flight(self) -> int:
        """``POST /v1/respond`` turns and OpenAI API completions running now."""
        return len(self._turns) + (self._openai.in_flight if self._openai else 0)

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new turns; let running ones finish for up to ``grace_s``, then cancel them."""
        self._closing = True
        if self._transcriptions is not None:
            await self._transcriptions.shutdown(grace_s)
        if self._openai is not None:
            await self._openai.shutdown(grace_s)
        if not self._turns:
            return
        _, late = await asyncio.wait(set(self._turns), timeout=grace_s)
        for turn in late:
            turn.cancel()
        if late:
            await asyncio.wait(late)

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Answer a plain HTTP request, refuse a bad upgrade, or return None to accept it.

        Every check runs on the request head: a body is read only for an accepted
        ``POST /v1/respond``.
        """
        method = connection.http_method if isinstance(connection, HttpConnection) else "GET"
        path = urlsplit(request.path).path
        if path in ("/", "/index.html"):
            return self._only(method, "GET") or http_response(
                http.HTTPStatus.OK,
                self._page,
                "text/html; charset=utf-8",
                {"Content-Security-Policy": PAGE_CSP},
            )
        if path == "/healthz":
            return self._only(method, "GET") or json_response(http.HTTPStatus.OK, self._health())
        if path == REALTIME_PATH:
            return self._only(method, "GET") or self._refuse(request)
        if path == RESPOND_PATH:
            refusal = self._only(method, "POST") or self._refuse(request)
            if refusal is not None or not isinstance(connection, HttpConnection):
                return refusal
            return await self._respond(connection, request)
        if path == TRANSCRIPTIONS_PATH and self._transcriptions is not None:
            refusal = self._only(method, "POST") or self._refuse(request)
            if refusal is not None or not isinstance(connection, HttpConnection):
                return refusal
            return await self._transcriptions.handle(connection, request, self._bodies)
        if self._openai is not None and path in self._openai.paths:
            return await self._openai_request(self._openai, method, path, connection, request)
        return error_response(http.HTTPStatus.NOT_FOUND, f"no such path: {path}")

    async def _openai_request(
        self,
        api: OpenAiApi,
        method: str,
        path: str,
        connection: ServerConnection,
        request: Request,
    ) -> Response | None:
        """The OpenAI-compatible API, behind the same checks and body limits."""
        refusal = self._only(method, api.paths[path]) or self._refuse(request)
        if refusal is not None:
            return refusal
        if method == "GET":
            return api.get(path)
        if not isinstance(connection, HttpConnection):  # only HttpConnection reads bodies
            return self._only(method, "GET")
        unsupported = api.unsupported_media(path, _media_type(request))

        async def parse(body: bytes) -> Any:
            return await api.parse(path, request, body)

        async def run(parsed: Any) -> Response:
            return await api.answer(connection, parsed)

        return await self._with_body(connection, unsupported, parse, run)

    @staticmethod
    def _only(method: str, allowed: str) -> Response | None:
        if method == allowed:
            return None
        return error_response(
            http.HTTPStatus.METHOD_NOT_ALLOWED, f"use {allowed} here", Allow=allowed
        )

    def _refuse(self, request: Request) -> Response | None:
        """The access checks: Host (without a token), Origin, then the token."""
        if self._token is None and not host_is_loopback(request):
            return error_response(
                http.HTTPStatus.FORBIDDEN, "this server answers only to a loopback Host"
            )
        if not origin_allowed(request, self._allowed_origins):
            return error_response(
                http.HTTPStatus.FORBIDDEN,
                "this Origin is not allowed (see --allowed-origin)",
            )
        if self._token is not None and not token_valid(request, self._token):
            return error_response(
                http.HTTPStatus.UNAUTHORIZED,
                "missing or wrong token: send 'Authorization: Bearer <token>'",
                **{"WWW-Authenticate": "Bearer"},
            )
        return None

    # --- POST /v1/respond ------------------------------------------------------------------

    async def _respond(self, connection: HttpConnection, request: Request) -> Response:
        """Refuse what the head shows to be unusable, then read the body and run the turn."""
        content_type = _media_type(request)
        unsupported = None
        if content_type != "application/json" and content_type not in AUDIO_CONTENT_TYPES:
            unsupported = "send audio (audio/wav, audio/flac, ...) or application/json with 'text'"

        async def parse(body: bytes) -> tuple[np.ndarray | None, str | None] | Response:
            return await _parse_body(content_type, body)

        async def run(parsed: tuple[np.ndarray | None, str | None]) -> Response:
            return await self._turn_response(*parsed)

        return await self._with_body(connection, unsupported, parse, run)

    async def _with_body(
        self,
        connection: HttpConnection,
        unsupported: str | None,
        parse: Callable[[bytes], Awaitable[T | Response]],
        run: Callable[[T], Awaitable[Response]],
    ) -> Response:
        """The checks on a POST head, the body read and parsed, then ``run`` on what it holds.

        ``unsupported`` is the 415 message when the head's Content-Type is refused. The body
        counts against the budget while it arrives and is parsed (decoded), not while ``run``
        runs (up to respond_timeout_s): running turns must not refuse every upload.
        """
        if connection.http_error is not None:
            return error_response(*connection.http_error)
        if self._closing:
            return error_response(http.HTTPStatus.SERVICE_UNAVAILABLE, SHUTTING_DOWN)
        if unsupported is not None:
            return error_response(http.HTTPStatus.UNSUPPORTED_MEDIA_TYPE, unsupported)
        size_bytes = connection.content_length
        if not self._bodies.reserve(size_bytes):
            return error_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many uploads at once ({self._bodies.held_bytes} bytes held, the limit is "
                f"{self._bodies.max_bytes}); try again later",
                **{"Retry-After": "1"},
            )
        try:
            parsed = await parse(await connection.read_body())
        except BodyError as exc:
            return error_response(exc.status, exc.message)
        finally:
            self._bodies.release(size_bytes)
        if isinstance(parsed, Response):
            return parsed
        return await run(parsed)

    async def _turn_response(self, audio: np.ndarray | None, text: str | None) -> Response:
        """Run the turn the request asks for (its body already read and parsed)."""
        if self._closing:  # shutdown began while the body arrived or was decoded
            return error_response(http.HTTPStatus.SERVICE_UNAVAILABLE, SHUTTING_DOWN)
        dialogue = self._new_dialogue()
        turn = asyncio.create_task(run_turn(dialogue, audio=audio, text=text), name="respond-turn")
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)
        try:
            await asyncio.wait({turn}, timeout=self._respond_timeout_s)
        finally:
            if not turn.done():
                turn.cancel()
                await asyncio.wait({turn})
            await dialogue.aclose()
        if turn.cancelled() and self._closing:
            return error_response(http.HTTPStatus.SERVICE_UNAVAILABLE, SHUTTING_DOWN)
        if turn.cancelled():
            return error_response(
                http.HTTPStatus.GATEWAY_TIMEOUT,
                f"the turn took longer than {self._respond_timeout_s:g} s",
            )
        status, payload = turn.result()
        return json_response(status, payload)


def _media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case."""
    return (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()


async def _parse_body(
    content_type: str, body: bytes
) -> tuple[np.ndarray | None, str | None] | Response:
    """The request's audio or text, or the 400 response that says why it is unusable."""
    if content_type == "application/json":
        try:
            return None, RespondText.model_validate_json(body).text
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return error_response(http.HTTPStatus.BAD_REQUEST, f"{where}: {first['msg']}")
    try:
        # Decoding up to 25 MiB of FLAC or MP3 must not stall the WebSocket clients.
        return await asyncio.to_thread(load_audio, body, name="the request body"), None
    except AudioError as exc:
        return error_response(http.HTTPStatus.BAD_REQUEST, str(exc))


async def run_turn(
    dialogue: Dialogue, *, audio: np.ndarray | None = None, text: str | None = None
) -> tuple[http.HTTPStatus, dict[str, Any]]:
    """One user turn and the reply (tools included) as the JSON of ``POST /v1/respond``."""
    started_s = time.monotonic()
    dialogue.add_user_turn(audio=audio, text=text, speech_end_s=started_s)
    transcript: str | None = None
    confirmation: dict[str, Any] | None = None
    error: ev.ErrorEvent | None = None
    done: ev.TurnDone | None = None
    async for event in dialogue.respond():
        if isinstance(event, ev.UserTranscript):
            transcript = event.text
        elif isinstance(event, ev.ConfirmationRequested):
            confirmation = {"prompt": event.prompt, "tool_call": _call_json(event.call)}
        elif isinstance(event, ev.ErrorEvent):
            error = event
        elif isinstance(event, ev.TurnDone):
            done = event
    payload: dict[str, Any] = {
        "transcript": transcript,
        "text": done.text if done else "",
        "finish_reason": done.finish_reason if done else "error",
        "tool_calls": [_call_json(c) for c in done.tool_calls] if done else [],
        "tool_results": [_result_json(r) for r in done.tool_results] if done else [],
        "confirmation": confirmation,
        "timings": {
            **(asdict(done.metrics) if done else {}),
            "total_ms": round((time.monotonic() - started_s) * 1000, 1),
        },
    }
    if error is not None:
        payload["error"] = {"code": error.code, "message": error.message}
        return http.HTTPStatus.INTERNAL_SERVER_ERROR, payload
    return http.HTTPStatus.OK, payload


def _call_json(call: ev.ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def _result_json(result: ev.ToolResult) -> dict[str, Any]:
    try:
        content: Any = json.loads(result.content)
    except ValueError:
        content = result.content
    return {
        "call_id": result.call_id,
        "name": result.name,
        "ok": result.ok,
        "content": content,
        "error": result.error,
        "duration_ms": round(result.duration_s * 1000, 1),
    }
