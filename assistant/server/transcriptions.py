"""``POST /v1/audio/transcriptions``: OpenAI's transcription endpoint over long recordings.

A multipart form as the ``openai`` SDK's ``audio.transcriptions.create`` sends it: ``file``
and ``model``, optionally ``language``, ``response_format`` (``json``, ``text``, ``srt``,
``vtt``, ``verbose_json``), ``stream``, ``temperature`` (0 only: greedy) and vLLM's
``max_completion_tokens``. The recording goes through
``assistant.transcription`` (pieces of at most 30 s, batched). With ``stream`` the text comes
as server-sent events (``transcript.text.delta`` per piece, then ``transcript.text.done``),
each delta also carrying its piece's times.

The body is read only after the access checks, within the server's body limit, and parsed
by python-multipart; its bytes count against the server's upload budget until the
transcription ends (the audio is decoded from them a block at a time).
"""

from __future__ import annotations

import asyncio
import http
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from websockets.http11 import Request, Response

from assistant.audio.io import AudioError
from assistant.config import TranscriptionSettings, VadSettings, iso_639_1
from assistant.events import TranscriptSegment
from assistant.model.backend import ModelBackend
from assistant.server.http_edge import (
    BodyBudget,
    BodyError,
    HttpConnection,
    error_response,
    http_response,
    json_response,
)
from assistant.transcription import LongTranscription, SegmentWriter
from assistant.transcription.formats import full_text, segment_text

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"

MAX_FORM_PARTS = 16
MAX_FIELD_BYTES = 1024
"""Largest form field other than the file."""

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class FormError(ValueError):
    """The multipart form is unusable; the message says why."""


class TranscriptionForm(BaseModel):
    """The fields of a transcription request besides the file."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    """Any name: this server runs one model."""
    language: str | None = None
    response_format: ResponseFormat = "json"
    stream: bool = False
    temperature: float = 0.0
    """Transcription here is greedy: anything above 0 is refused rather than ignored."""
    max_completion_tokens: int | None = Field(None, ge=1)
    """vLLM's field: the most tokens per piece (at most the server's own limit)."""

    @field_validator("temperature")
    @classmethod
    def _greedy(cls, value: float) -> float:
        if value != 0.0:
            raise ValueError("transcription here is greedy: send 0 or leave it out")
        return value

    @field_validator("language")
    @classmethod
    def _iso_639_1(cls, value: str | None) -> str | None:
        return None if value is None else iso_639_1(value)


@dataclass(frozen=True)
class Upload:
    """A parsed request: the audio file's bytes and the form."""

    audio: bytes
    form: TranscriptionForm


def parse_form(content_type: str, body: bytes) -> Upload:
    """The file and fields of a ``multipart/form-data`` body; ``FormError`` saying what is
    wrong."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError("send multipart/form-data with a boundary, as the openai SDK does")
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin() -> None:
        if len(parts) == MAX_FORM_PARTS:
            raise FormError(f"the form has more than {MAX_FORM_PARTS} parts")
        parts.append(({}, bytearray()))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1][0][header[0].strip().lower()] = header[1].strip()
        header[0], header[1] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise FormError(f"the multipart body is malformed: {exc}") from None
    return _upload(parts)


def _upload(parts: list[tuple[dict[bytes, bytes], bytearray]]) -> Upload:
    from python_multipart.multipart import parse_options_header

    fields: dict[str, str] = {}
    audio: bytes | None = None
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise FormError("a form part has no name")
        if name in fields or (name == "file" and audio is not None):
            raise FormError(f"the form has '{name}' twice")
        if name == "file":
            audio = bytes(data)
        elif len(data) > MAX_FIELD_BYTES:
            raise FormError(f"the form field '{name}' is longer than {MAX_FIELD_BYTES} bytes")
        else:
            fields[name] = data.decode("utf-8", "replace")
    if audio is None:
        raise FormError("the form has no 'file' (the audio to transcribe)")
    try:
        form = TranscriptionForm.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        message = "is not supported" if first["type"] == "extra_forbidden" else first["msg"]
        raise FormError(f"{where}: {message}") from None
    return Upload(audio, form)


class TranscriptionsEndpoint:
    """Serves ``POST /v1/audio/transcriptions`` on the shared model worker."""

    def __init__(
        self,
        worker: ModelBackend,
        settings: TranscriptionSettings | None = None,
        vad: VadSettings | None = None,
    ) -> None:
        self.worker = worker
        self.settings = settings or TranscriptionSettings()
        self.vad = vad
        self._running: set[asyncio.Task[Response]] = set()
        self._closing = False

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new requests; let running ones finish for up to ``grace_s``, then cancel."""
        self._closing = True
        if not self._running:
            return
        _, late = await asyncio.wait(set(self._running), timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def handle(
        self, connection: HttpConnection, request: Request, bodies: BodyBudget
    ) -> Response:
        """Answer one request whose access checks passed: read, parse, transcribe."""
        if connection.http_error is not None:
            return error_response(*connection.http_error)
        if self._closing:
            return error_response(http.HTTPStatus.SERVICE_UNAVAILABLE, "the server is stopping")
        content_type = request.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            return error_response(
                http.HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "send multipart/form-data with 'file' and 'model', as the openai SDK does",
            )
        size_bytes = connection.content_length
        if not bodies.reserve(size_bytes):
            return error_response(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"too many uploads at once ({bodies.held_bytes} bytes held, the limit is "
                f"{bodies.max_bytes}); try again later",
                **{"Retry-After": "1"},
            )
        try:  # the upload's bytes are held until its transcription ends
            body = await connection.read_body()
            upload = await asyncio.to_thread(parse_form, content_type, body)
            del body
            task = asyncio.create_task(self._answer(connection, upload), name="transcription")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    return await task
            except TimeoutError:
                return error_response(
                    http.HTTPStatus.GATEWAY_TIMEOUT,
                    f"the transcription took longer than {self.settings.timeout_s:g} s",
                )
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this request itself is being cancelled
                return error_response(
                    http.HTTPStatus.SERVICE_UNAVAILABLE, "the server stopped before the end"
                )
        except BodyError as exc:
            return error_response(exc.status, exc.message)
        except FormError as exc:
            return error_response(http.HTTPStatus.BAD_REQUEST, str(exc))
        finally:
            bodies.release(size_bytes)

    async def _answer(self, connection: HttpConnection, upload: Upload) -> Response:
        form = upload.form
        try:
            job = LongTranscription(
                self.worker,
                upload.audio,
                language=form.language,
                settings=self._settings_for(form),
                vad=self.vad,
                name="the uploaded file",
            )
        except AudioError as exc:
            return error_response(http.HTTPStatus.BAD_REQUEST, str(exc))
        try:
            if form.stream:
                async with aclosing(_events(job)) as events:
                    await connection.send_streamed(
                        http.HTTPStatus.OK, "text/event-stream; charset=utf-8", events
                    )
                return error_response(http.HTTPStatus.OK, "streamed")  # not sent: closed
            segments = [segment async for segment in job.segments()]
        except Exception as exc:  # a failed piece fails the request, never the server
            return error_response(
                http.HTTPStatus.INTERNAL_SERVER_ERROR, f"the transcription failed: {exc}"
            )
        return render(form.response_format, segments, job)

    def _settings_for(self, form: TranscriptionForm) -> TranscriptionSettings:
        """The server's settings, with a smaller token limit per piece when the form asks."""
        asked = form.max_completion_tokens
        if asked is None or asked >= self.settings.max_new_tokens:
            return self.settings
        return self.settings.model_copy(update={"max_new_tokens": asked})


async def _events(job: LongTranscription) -> AsyncGenerator[bytes, None]:
    """Server-sent events: a delta per piece, then the whole text (or an error)."""
    segments: list[TranscriptSegment] = []
    try:
        async for segment in job.segments():
            segments.append(segment)
            text = segment_text(segment)
            delta = (" " if len(segments) > 1 and text else "") + text
            yield _sse(
                {
                    "type": "transcript.text.delta",
                    "delta": delta,
                    "segment": _verbose_segment(segment),
                }
            )
    except AudioError as exc:
        yield _sse({"error": {"code": "bad_audio", "message": str(exc)}})
        return
    except Exception as exc:  # the client hears why its stream ends
        yield _sse({"error": {"code": "transcription_failed", "message": str(exc)}})
        return
    yield _sse(
        {
            "type": "transcript.text.done",
            "text": full_text(segments),
            "language": job.progress.language,
            "usage": {"type": "duration", "seconds": round(job.progress.duration_s, 3)},
        }
    )


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def render(
    response_format: ResponseFormat, segments: list[TranscriptSegment], job: LongTranscription
) -> Response:
    """The finished transcript in the requested format."""
    progress = job.progress
    duration_s = round(progress.duration_s, 3)
    if response_format in ("srt", "vtt"):
        writer = SegmentWriter(response_format)
        text = writer.header() + "".join(writer.segment(s) for s in segments)
        return http_response(http.HTTPStatus.OK, text.encode(), "text/plain; charset=utf-8")
    if response_format == "text":
        body = (full_text(segments) + "\n").encode()
        return http_response(http.HTTPStatus.OK, body, "text/plain; charset=utf-8")
    payload: dict[str, Any] = {
        "text": full_text(segments),
        "language": progress.language,
        "usage": {"type": "duration", "seconds": duration_s},
    }
    if response_format == "verbose_json":
        payload = {
            "task": "transcribe",
            "language": language_name(progress.language),
            "duration": duration_s,
            "text": payload["text"],
            "segments": [_verbose_segment(s) for s in segments],
            "usage": payload["usage"],
        }
    return json_response(http.HTTPStatus.OK, payload)


def _verbose_segment(segment: TranscriptSegment) -> dict[str, Any]:
    """A segment as OpenAI's verbose_json lists it, with this server's extra fields."""
    return {
        "id": segment.index,
        "seek": segment.start_ms // 10,
        "start": segment.start_ms / 1000,
        "end": segment.end_ms / 1000,
        "text": segment_text(segment),
        "temperature": 0.0,
        "language": segment.language,
        "cut": segment.cut,
        "finish_reason": segment.finish_reason,
    }


def language_name(code: str | None) -> str | None:
    """``english`` for ``en``, as OpenAI names languages; the code when it has no name."""
    if code is None:
        return None
    import pycountry

    language = pycountry.languages.get(alpha_2=code)
    return str(language.name).lower() if language is not None else code
