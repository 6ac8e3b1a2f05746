"""The OpenAI chat-completions request for a conversation: pure, no I/O.

mistral-common turns its own messages into OpenAI's (``ChatCompletionRequest.to_openai``:
audio as ``input_audio`` parts holding base64 WAV, tool-call arguments as JSON text), after
``place_instructions`` has moved the instructions into the first user turn where the tokenizer
version needs it, exactly as the local worker does: both sides then tokenize the same
conversation. ``return_token_ids`` asks vLLM for the generated token ids, so the reply is split
into text and tool calls by the project's own parser (vLLM's streaming tool parser is lossy on
malformed calls); a server that ignores it is read from its text and tool-call deltas instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assistant.config import GenerationParams
from assistant.model.prompting import place_instructions


def count_clips(messages: Sequence[Any]) -> int:
    """Audio clips in mistral-common ``messages`` (what vLLM's per-request limit counts)."""
    from mistral_common.protocol.instruct.chunk import AudioChunk, AudioURLChunk

    clips = 0
    for message in messages:
        content = getattr(message, "content", None)
        if isinstance(content, list):
            clips += sum(1 for c in content if isinstance(c, (AudioChunk, AudioURLChunk)))
    return clips


def openai_messages(
    messages: Sequence[Any], tools: Sequence[Any] | None, version: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """``messages`` and ``tools`` (mistral-common) as OpenAI JSON, instructions placed."""
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    placed = place_instructions(messages, version)
    request: ChatCompletionRequest[Any] = ChatCompletionRequest(
        messages=placed, tools=list(tools) if tools else None
    )
    wire = request.to_openai()
    return list(wire["messages"]), (list(wire["tools"]) if tools else None)


def chat_body(
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    params: GenerationParams,
    *,
    max_tokens: int,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a streamed ``POST /chat/completions``."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "return_token_ids": True,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if tools:
        body["tools"] = tools
        body["tool_choice"] = "auto"
    body.update(extras or {})
    return body


def session_headers(header: str, conversation_id: str | None) -> dict[str, str]:
    """The header that keeps a conversation on one replica behind a router; none if unnamed."""
    if not header or conversation_id is None:
        return {}
    return {header: conversation_id}
