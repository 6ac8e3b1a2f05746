"""OpenAI chat completions on the wire: requests parsed once (pydantic), replies built (pure).

A request is checked here completely, before the model sees it: what the server cannot honour
(several choices, stop strings, log-probabilities, a forced tool, JSON output, images) is
refused with a 400 that names the field. What it can (text and ``input_audio`` parts, tools,
``tool_choice`` ``auto`` / ``none``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``,
``stream`` with ``include_usage``, ``parallel_tool_calls: false``) becomes mistral-common
messages and ``GenerationParams``. Responses and stream chunks have exactly OpenAI's shapes; a
malformed tool call (which OpenAI's format cannot express) is reported in an extra
``malformed_tool_calls`` list on the choice, which OpenAI clients ignore.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant import events as ev
from assistant.config import GenerationParams

_VALID_ID = re.compile(rf"[A-Za-z0-9]{{{ev.TOOL_CALL_ID_LENGTH}}}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class WireError(ValueError):
    """A request the server refuses; the message names the field and says why."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Wire):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class AudioData(_Wire):
    """Base64 audio of any format the server decodes (WAV, FLAC, MP3, OGG)."""

    data: str = Field(min_length=1)
    format: str = "wav"


class AudioPart(_Wire):
    """``{"type": "input_audio", "input_audio": {"data": ..., "format": "wav"}}``."""

    type: Literal["input_audio"]
    input_audio: AudioData


Part = Annotated[TextPart | AudioPart, Field(discriminator="type")]


class FunctionCallWire(_Wire):
    """A call's function: its name and its arguments as JSON text."""

    name: str
    arguments: str = "{}"


class ToolCallWire(_Wire):
    """A tool call an earlier assistant message made."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCallWire


class SystemWire(_Wire):
    """System (or developer) instructions."""

    role: Literal["system", "developer"]
    content: str | list[TextPart]


class UserWire(_Wire):
    """What the user said: text and audio parts."""

    role: Literal["user"]
    content: str | list[Part]


class AssistantWire(_Wire):
    """An earlier reply: text and/or tool calls."""

    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallWire] | None = None


class ToolResultWire(_Wire):
    """A tool's result for the call ``tool_call_id``."""

    role: Literal["tool"]
    tool_call_id: str = Field(min_length=1)
    content: str | list[TextPart]


Message = Annotated[
    SystemWire | UserWire | AssistantWire | ToolResultWire, Field(discriminator="role")
]


class FunctionWire(_Wire):
    """A function the model may call (JSON-schema parameters)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolDefWire(_Wire):
    """``{"type": "function", "function": {...}}``."""

    type: Literal["function"]
    function: FunctionWire


class StreamOptions(_Wire):
    """``stream_options``: only ``include_usage`` changes anything."""

    include_usage: bool = False


class ChatRequest(_Wire):
    """The body of ``POST /v1/chat/completions``; fields not listed are ignored."""

    model: str = ""
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolDefWire] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    n: int | None = None
    stop: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None


def parse_chat_request(body: bytes) -> ChatRequest:
    """The request, or a ``WireError`` naming the first bad field."""
    try:
        request = ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise WireError(f"{where}: {first['msg']}") from None
    _refuse_unsupported(request)
    return request


def _refuse_unsupported(request: ChatRequest) -> None:
    """What this server cannot do is refused, never silently ignored."""
    if request.n not in (None, 1):
        raise WireError("n: this server returns one choice (n must be 1)")
    if request.stop:
        raise WireError("stop: stop sequences are not supported")
    if request.logprobs or request.top_logprobs:
        raise WireError("logprobs: log-probabilities are not returned by this server")
    if request.response_format and request.response_format.get("type", "text") != "text":
        raise WireError("response_format: only 'text' is supported (no JSON mode)")
    if request.modalities and set(request.modalities) - {"text"}:
        raise WireError("modalities: this server answers with text only")
    if request.frequency_penalty or request.presence_penalty or request.logit_bias:
        raise WireError("frequency_penalty, presence_penalty and logit_bias are not supported")
    choice = request.tool_choice
    if choice in (None, "auto", "none"):
        return
    if choice == "required" or isinstance(choice, dict):
        raise WireError(
            "tool_choice: only 'auto' and 'none' are supported; this server cannot force the "
            "model to call a tool (it does not constrain decoding)"
        )
    raise WireError(f"tool_choice: expected 'auto' or 'none', not {choice!r}")


def mistral_id(call_id: str) -> str:
    """A tool-call id as Mistral's formats need it (nine alphanumerics); others are mapped
    to one deterministically, so a call and its result still match."""
    if _VALID_ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.blake2b(call_id.encode(), digest_size=8).digest(), "big")
    digits = []
    for _ in range(ev.TOOL_CALL_ID_LENGTH):
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(digits)


def decode_audio_data(data: str, where: str) -> bytes:
    """The bytes of a base64 ``input_audio.data``; ``WireError`` if it is not base64."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{where}.input_audio.data is not valid base64") from None


def _text(content: str | list[TextPart] | None) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(p.text for p in content)


def to_mistral(request: ChatRequest, audio: dict[tuple[int, int], Any]) -> list[Any]:
    """The request's messages as mistral-common messages; ``audio[(message, part)]`` holds
    the ``AudioChunk`` decoded for each ``input_audio`` part."""
    from mistral_common.protocol.instruct.chunk import TextChunk
    from mistral_common.protocol.instruct.messages import (
        AssistantMessage,
        SystemMessage,
        ToolMessage,
        UserMessage,
    )
    from mistral_common.protocol.instruct.tool_calls import FunctionCall, ToolCall

    messages: list[Any] = []
    for i, message in enumerate(request.messages):
        if isinstance(message, SystemWire):
            messages.append(SystemMessage(content=_text(message.content)))
        elif isinstance(message, UserWire):
            if isinstance(message.content, str):
                messages.append(UserMessage(content=message.content))
                continue
            chunks = [
                TextChunk(text=part.text) if isinstance(part, TextPart) else audio[(i, j)]
                for j, part in enumerate(message.content)
            ]
            messages.append(UserMessage(content=chunks))
        elif isinstance(message, AssistantWire):
            calls = [
                ToolCall(
                    id=mistral_id(call.id),
                    function=FunctionCall(
                        name=call.function.name, arguments=call.function.arguments
                    ),
                )
                for call in message.tool_calls or []
            ]
            messages.append(
                AssistantMessage(content=_text(message.content) or None, tool_calls=calls or None)
            )
        else:
            messages.append(
                ToolMessage(
                    content=_text(message.content), tool_call_id=mistral_id(message.tool_call_id)
                )
            )
    return messages


def audio_parts(request: ChatRequest) -> list[tuple[tuple[int, int], AudioPart]]:
    """Every ``input_audio`` part, with its (message, part) position."""
    found = []
    for i, message in enumerate(request.messages):
        if isinstance(message, UserWire) and isinstance(message.content, list):
            found += [
                ((i, j), part)
                for j, part in enumerate(message.content)
                if isinstance(part, AudioPart)
            ]
    return found


def tool_dicts(request: ChatRequest) -> list[dict[str, Any]]:
    """The request's tools as OpenAI function-tool dicts; none when ``tool_choice`` is none."""
    if not request.tools or request.tool_choice == "none":
        return []
    return [tool.model_dump() for tool in request.tools]


def generation_params(request: ChatRequest, defaults: GenerationParams) -> GenerationParams:
    """Sampling and length from the request, the server's settings where it says nothing."""
    return GenerationParams(
        max_new_tokens=request.max_completion_tokens
        or request.max_tokens
        or defaults.max_new_tokens,
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        seed=request.seed,
    )


# --- replies --------------------------------------------------------------------------------


class Reply:
    """Builds the JSON of one completion: the whole response, or its stream chunks."""

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self._calls = 0

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def first_chunk(self) -> dict[str, Any]:
        """The chunk that opens the stream (the role)."""
        return self._chunk({"role": "assistant", "content": ""})

    def event_chunk(self, event: ev.ModelEvent) -> dict[str, Any] | None:
        """The chunk for a text delta, tool call or malformed call; None for other events."""
        if isinstance(event, ev.TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ev.ToolCall):
            call = {"index": self._calls, **_call_json(event)}
            self._calls += 1
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, ev.MalformedToolCall):
            return self._chunk({}, malformed_tool_calls=[_malformed_json(event)])
        return None

    def last_chunks(self, done: ev.ResponseDone) -> list[dict[str, Any]]:
        """The chunk with the finish reason, then the usage chunk when asked for."""
        chunks = [self._chunk({}, finish_reason(done))]
        if self.include_usage:
            chunks.append(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_json(done.usage),
                }
            )
        return chunks

    def completion(
        self, done: ev.ResponseDone, malformed: list[ev.MalformedToolCall]
    ) -> dict[str, Any]:
        """The whole ``chat.completion`` object."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": done.text or None,
            "refusal": None,
        }
        if done.tool_calls:
            message["tool_calls"] = [_call_json(call) for call in done.tool_calls]
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason(done),
        }
        if malformed:
            choice["malformed_tool_calls"] = [_malformed_json(m) for m in malformed]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_json(done.usage),
        }


def finish_reason(done: ev.ResponseDone) -> str:
    """OpenAI's finish reason: ``stop``, ``length`` or ``tool_calls``."""
    if done.tool_calls:
        return "tool_calls"
    return "length" if done.finish_reason == "length" else "stop"


def usage_json(usage: ev.Usage) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.generated_tokens,
        "total_tokens": usage.prompt_tokens + usage.generated_tokens,
    }


def _call_json(call: ev.ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }


def _malformed_json(call: ev.MalformedToolCall) -> dict[str, str]:
    return {"raw_text": call.raw_text, "reason": call.reason}


def error_json(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object (what the SDK reads from an error body or a stream event)."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def models_json(model: str, created: int, context_tokens: int) -> dict[str, Any]:
    """``GET /v1/models``: the one model, with vLLM's ``max_model_len`` extension."""
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "voxtral-assistant",
                "max_model_len": context_tokens,
            }
        ],
    }
