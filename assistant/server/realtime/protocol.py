"""The wire protocol of ``/v1/realtime``: a documented subset of the OpenAI Realtime API (GA names).

Client events are parsed once, here, into typed pydantic models; anything malformed becomes a
``ProtocolError`` that the server turns into an ``error`` event carrying the offending
``event_id``. Server events are plain dicts built by the functions below. No I/O happens here.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from assistant.config import iso_639_1

MAX_EVENT_ID_CHARS = 128
"""Longer client ``event_id`` values are refused (and never echoed back)."""

MAX_OUTPUT_TOKENS = 4096
"""The largest ``max_output_tokens`` a client may ask for (as OpenAI's API allows)."""


class ProtocolError(Exception):
    """A client event that cannot be accepted; becomes an ``error`` server event."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        event_id: str | None = None,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.event_id = event_id
        self.param = param
        self.error_type = error_type


# --- client events -------------------------------------------------------------------------


class _Wire(BaseModel):
    # Clients (the official SDKs among them) send fields this server does not use, such as
    # voices or tracing options: they are ignored rather than refused.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServerVad(_Wire):
    """``turn_detection`` of type ``server_vad``; unset fields keep the server's defaults."""

    type: Literal["server_vad"]
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10000)
    create_response: bool = True
    interrupt_response: bool = True


class SemanticVad(_Wire):
    """``turn_detection`` of type ``semantic_vad``: the server's VAD with the eager end of turn,
    the model's judgement that a command is complete (``eagerness``: how soon it may end)."""

    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetectionConfig = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class AudioFormat(_Wire):
    """``audio/pcm``: little-endian PCM16 mono at 24 kHz (OpenAI) or 16 kHz."""

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[16000, 24000] = 24000

    @field_validator("type", mode="before")
    @classmethod
    def _pcm_only(cls, value: Any) -> Any:
        if value in ("audio/pcmu", "audio/pcma"):
            raise ValueError(
                f"{value} (G.711) is not supported: use audio/pcm (PCM16 at 24000 or 16000 Hz)"
            )
        return value


class InputTranscription(_Wire):
    """Asking for ``conversation.item.input_audio_transcription.completed`` events."""

    model: str | None = None
    language: str | None = Field(None, max_length=16)
    """ISO-639-1 ("en"): user transcripts are made in this language; absent: detected."""

    @field_validator("language")
    @classmethod
    def _iso_639_1(cls, value: str | None) -> str | None:
        return None if value is None else iso_639_1(value)


class AudioInputConfig(_Wire):
    """``session.audio.input``."""

    format: AudioFormat | None = None
    turn_detection: TurnDetectionConfig | None = None
    transcription: InputTranscription | None = None


class AudioOutputConfig(_Wire):
    """``session.audio.output``: the format, voice and speed of spoken replies."""

    format: AudioFormat | None = None
    voice: str | None = Field(None, min_length=1, max_length=64)
    """One of OpenAI's voice names (the server's voice) or a voice of the server's engine."""
    speed: float | None = Field(None, ge=0.25, le=1.5)

    @field_validator("voice", mode="before")
    @classmethod
    def _named_voice(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError(
                "custom voices ({'id': ...}) are not supported: name one of OpenAI's voices "
                "(spoken by the server's voice) or an espeak-ng voice such as 'fr-fr'"
            )
        return value


class AudioConfig(_Wire):
    """``session.audio``."""

    input: AudioInputConfig | None = None
    output: AudioOutputConfig | None = None


OutputModality = Literal["text", "audio"]


def _single_modality(value: list[OutputModality] | None) -> list[OutputModality] | None:
    """``output_modalities`` holds one of text or audio (OpenAI does not give both)."""
    if value is not None and len(set(value)) != 1:
        raise ValueError('must be ["text"] or ["audio"] (audio replies carry their transcript)')
    return value


class FunctionTool(_Wire):
    """A tool declared by the client; the client runs it and returns ``function_call_output``."""

    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class SessionConfig(_Wire):
    """``session.update``'s ``session``: only the fields that are present change."""

    type: Literal["realtime"] = "realtime"
    output_modalities: list[OutputModality] | None = None
    """``["text"]`` or ``["audio"]`` (spoken replies with their transcript)."""
    instructions: str | None = Field(None, max_length=100_000)
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    audio: AudioConfig | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    """Longest reply: 1 to ``MAX_OUTPUT_TOKENS``, or "inf" (and null) for the server's limit."""

    @field_validator("max_output_tokens", mode="before")
    @classmethod
    def _token_range(cls, value: Any) -> Any:
        if value is None or value == "inf":
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_OUTPUT_TOKENS
        ):
            raise ValueError(f"must be an integer from 1 to {MAX_OUTPUT_TOKENS}, or 'inf'")
        return value

    @field_validator("output_modalities")
    @classmethod
    def _one_modality(cls, value: list[OutputModality] | None) -> list[OutputModality] | None:
        return _single_modality(value)


class SessionUpdate(_Wire):
    """``session.update``."""

    type: Literal["session.update"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)
    session: SessionConfig


class InputAudioBufferAppend(_Wire):
    """``input_audio_buffer.append``: base64 PCM16 in the session's input format."""

    type: Literal["input_audio_buffer.append"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)
    audio: str


class InputAudioBufferCommit(_Wire):
    """``input_audio_buffer.commit``: the buffered audio becomes a user message."""

    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)


class InputAudioBufferClear(_Wire):
    """``input_audio_buffer.clear``."""

    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)


class InputText(_Wire):
    """A text part of a user message."""

    type: Literal["input_text"]
    text: str


class InputAudio(_Wire):
    """An audio part of a user message: base64 PCM16 in the session's input format."""

    type: Literal["input_audio"]
    audio: str


class UserMessageItem(_Wire):
    """A user message created by the client."""

    type: Literal["message"]
    role: Literal["user"]
    id: str | None = Field(None, max_length=64)
    content: list[Annotated[InputText | InputAudio, Field(discriminator="type")]] = Field(
        min_length=1
    )


class FunctionCallOutputItem(_Wire):
    """The output of a client-side tool call."""

    type: Literal["function_call_output"]
    id: str | None = Field(None, max_length=64)
    call_id: str = Field(min_length=1, max_length=64)
    output: str


class ConversationItemCreate(_Wire):
    """``conversation.item.create`` (user messages and ``function_call_output``)."""

    type: Literal["conversation.item.create"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)
    previous_item_id: str | None = None
    item: Annotated[UserMessageItem | FunctionCallOutputItem, Field(discriminator="type")]


class ResponseParams(_Wire):
    """``response.create``'s ``response``: ``output_modalities`` applies to this response;
    the other overrides are ignored (the session's settings apply)."""

    output_modalities: list[OutputModality] | None = None

    @field_validator("output_modalities")
    @classmethod
    def _one_modality(cls, value: list[OutputModality] | None) -> list[OutputModality] | None:
        return _single_modality(value)


class ResponseCreate(_Wire):
    """``response.create``."""

    type: Literal["response.create"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)
    response: ResponseParams | None = None


class ResponseCancel(_Wire):
    """``response.cancel``."""

    type: Literal["response.cancel"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)
    response_id: str | None = None


class ConversationItemTruncate(_Wire):
    """``conversation.item.truncate``: the client played only ``audio_end_ms`` of an item."""

    type: Literal["conversation.item.truncate"]
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)
    item_id: str = Field(min_length=1, max_length=64)
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
)
"""Every client event this server understands."""

_EVENT_TYPES: dict[str, TypeAdapter[Any]] = {
    "session.update": TypeAdapter(SessionUpdate),
    "input_audio_buffer.append": TypeAdapter(InputAudioBufferAppend),
    "input_audio_buffer.commit": TypeAdapter(InputAudioBufferCommit),
    "input_audio_buffer.clear": TypeAdapter(InputAudioBufferClear),
    "conversation.item.create": TypeAdapter(ConversationItemCreate),
    "conversation.item.truncate": TypeAdapter(ConversationItemTruncate),
    "response.create": TypeAdapter(ResponseCreate),
    "response.cancel": TypeAdapter(ResponseCancel),
}
SUPPORTED_CLIENT_EVENTS = tuple(_EVENT_TYPES)

_UNION_TAGS = frozenset(
    {"message", "function_call_output", "input_text", "input_audio", "server_vad", "semantic_vad"}
)
"""The ``type`` tags of the tagged unions, which pydantic puts in an error's location: left out
of ``param``, which names the field as the client wrote it."""

_BETA_FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "session.update": (
        "session",
        {
            "modalities": "output_modalities",
            "voice": "audio.output.voice",
            "speed": "audio.output.speed",
            "input_audio_format": "audio.input.format",
            "output_audio_format": "audio.output.format",
            "turn_detection": "audio.input.turn_detection",
            "input_audio_transcription": "audio.input.transcription",
            "input_audio_noise_reduction": "audio.input.noise_reduction",
            "max_response_output_tokens": "max_output_tokens",
        },
    ),
    "response.create": (
        "response",
        {
            "modalities": "output_modalities",
            "voice": "audio.output.voice",
            "output_audio_format": "audio.output.format",
            "max_response_output_tokens": "max_output_tokens",
        },
    ),
}
"""Fields of the beta Realtime API's client events, by event: the object holding them and each
field's GA name. Ignoring them would silently change what the client asked for."""


def _refuse_beta_fields(kind: str, raw: dict[str, Any], event_id: str | None) -> None:
    where = _BETA_FIELDS.get(kind)
    if where is None:
        return
    key, renamed = where
    body = raw.get(key)
    if not isinstance(body, dict):
        return
    for beta, ga in renamed.items():
        if beta in body:
            raise ProtocolError(
                "unknown_parameter",
                f"{key}.{beta} is the beta Realtime API's field; this server speaks the GA "
                f"API: use {key}.{ga}",
                event_id=event_id,
                param=f"{key}.{beta}",
            )


def parse_client_event(data: str | bytes) -> ClientEvent:
    """Parse one text frame into a client event, or raise ``ProtocolError`` saying why not."""
    if isinstance(data, bytes):
        raise ProtocolError("invalid_json", "binary frames are not supported: send JSON text")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"the frame is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_json", "an event must be a JSON object")
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or len(event_id) > MAX_EVENT_ID_CHARS:
        event_id = None
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(
            "missing_required_parameter", "the event has no 'type'", event_id=event_id, param="type"
        )
    adapter = _EVENT_TYPES.get(kind)
    if adapter is None:
        raise ProtocolError(
            "unknown_event_type",
            f"unknown event type {kind[:80]!r}; supported: {', '.join(SUPPORTED_CLIENT_EVENTS)}",
            event_id=event_id,
            param="type",
        )
    _refuse_beta_fields(kind, raw, event_id)
    try:
        event: ClientEvent = adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(
            str(p)
            for p in first["loc"]
            if not str(p).startswith("function-") and p not in _UNION_TAGS
        )
        code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
        raise ProtocolError(
            code, f"{kind}: {param}: {first['msg']}", event_id=event_id, param=param
        ) from None
    return event


def decode_pcm16(
    audio_b64: str, *, event_id: str | None = None, param: str = "audio"
) -> np.ndarray:
    """Base64 little-endian PCM16 → int16 samples; garbage or an odd byte count is refused."""
    try:
        raw = base64.b64decode(audio_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "invalid_audio", "audio is not valid base64", event_id=event_id, param=param
        ) from None
    if len(raw) % 2:
        raise ProtocolError(
            "invalid_audio",
            f"PCM16 audio needs an even number of bytes, got {len(raw)}",
            event_id=event_id,
            param=param,
        )
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


# --- server events -------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """A fresh identifier in OpenAI's style, e.g. ``item_3f2a...``."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event of type ``kind`` with a fresh ``event_id``."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(error: ProtocolError) -> dict[str, Any]:
    """The ``error`` event for a refused client event."""
    return server_event(
        "error",
        error={
            "type": error.error_type,
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "event_id": error.event_id,
        },
    )


def user_message_item(item_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    """A user ``message`` item as it appears in ``conversation.item.created``."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": content,
    }


def assistant_message_item(
    item_id: str, text: str, status: str, *, spoken: bool = False
) -> dict[str, Any]:
    """An assistant ``message`` item with one ``output_text`` part, or (``spoken``) one
    ``output_audio`` part whose ``transcript`` is ``text`` (the audio went out as deltas)."""
    part = (
        {"type": "output_audio", "transcript": text}
        if spoken
        else {"type": "output_text", "text": text}
    )
    content = [part] if text or status != "in_progress" else []
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    """A ``function_call`` item."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def function_call_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    """A ``function_call_output`` item (from the client, or from a server-side tool)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call_output",
        "status": "completed",
        "call_id": call_id,
        "output": output,
    }


def response_object(
    response_id: str,
    status: str,
    output: list[dict[str, Any]],
    *,
    status_details: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    spoken: bool = False,
) -> dict[str, Any]:
    """The ``response`` of ``response.created`` / ``response.done``.

    ``metrics`` (the turn's latency figures) is this server's extension to the object.
    """
    response: dict[str, Any] = {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": status_details,
        "output": output,
        "output_modalities": ["audio" if spoken else "text"],
        "conversation_id": None,
        "usage": usage,
    }
    if metrics is not None:
        response["metrics"] = metrics
    return response
