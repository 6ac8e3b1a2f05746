"""Streamed chat-completion chunks into the local worker's events: pure, no I/O.

Two ways to read a chunk, chosen by what the server sends:

- token ids (vLLM with ``return_token_ids``): every generated id but ``</s>`` goes through the
  project's ``ToolCallParser``, which gives exactly the events the local worker gives for the
  same tokens (text split the same way, a malformed or cut-off call reported as such);
- otherwise (an OpenAI-compatible server that sends no ids, such as another voxtral-assistant):
  text deltas as they come, tool-call deltas merged by index, each call complete once the next
  one starts or the reply ends; arguments that are not a JSON object make a
  ``MalformedToolCall``, and so does an entry of the ``malformed_tool_calls`` list that
  voxtral-assistant's own API adds to a choice.

The first chunk with ids or with text decides; the other kind is ignored from then on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from assistant.events import (
    TOOL_CALL_ID_LENGTH,
    MalformedToolCall,
    TextDelta,
    ToolCall,
    new_tool_call_id,
)
from assistant.model.toolcall_parser import ParserEvent, ToolCallParser

_VALID_ID = re.compile(rf"[A-Za-z0-9]{{{TOOL_CALL_ID_LENGTH}}}")


@dataclass
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ChunkReader:
    """Feed chunks (the JSON of ``chat.completion.chunk`` objects); get model events back."""

    parser: ToolCallParser
    eos_id: int
    mode: Literal["undecided", "tokens", "deltas"] = "undecided"
    finish_reason: str | None = None
    """The server's finish reason for the choice, once sent."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    generated_tokens: int = 0
    """Token ids seen (``</s>`` included), in token mode."""
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    malformed: list[MalformedToolCall] = field(default_factory=list)
    _calls: dict[int, _CallParts] = field(default_factory=dict)
    _emitted: set[int] = field(default_factory=set)

    def feed(self, chunk: dict[str, Any]) -> list[ParserEvent]:
        """Take one chunk; return the events it completes."""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
        events: list[ParserEvent] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            events += self._choice(choice)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return events

    @property
    def call_begun(self) -> bool:
        """Whether the reply has begun a tool call (``[TOOL_CALLS]``, or a tool-call delta)."""
        if self.mode == "tokens":
            return self.parser.call_begun
        return bool(self._calls or self.tool_calls or self.malformed)

    def finish(self) -> list[ParserEvent]:
        """The end of the stream: what the parser or the merged deltas still hold."""
        truncated = self.finish_reason == "length"
        if self.mode == "tokens":
            events = self.parser.finish(truncated=truncated)
            self.text = self.parser.text
            self.tool_calls = list(self.parser.tool_calls)
            self.malformed = list(self.parser.malformed)
            return events
        return self._complete_calls(None, truncated=truncated)

    def _choice(self, choice: dict[str, Any]) -> list[ParserEvent]:
        ids = choice.get("token_ids")
        delta = choice.get("delta") or {}
        if self.mode == "undecided":
            if ids is not None:
                self.mode = "tokens"
            elif delta.get("content") or delta.get("tool_calls"):
                self.mode = "deltas"
        if self.mode == "tokens":
            events: list[ParserEvent] = []
            for token in ids or []:
                self.generated_tokens += 1
                if token != self.eos_id:
                    events += self.parser.feed(int(token))
            return events
        if self.mode == "deltas":
            return self._deltas(delta, choice.get("malformed_tool_calls") or [])
        return []

    def _deltas(self, delta: dict[str, Any], malformed: list[Any]) -> list[ParserEvent]:
        events: list[ParserEvent] = []
        content = delta.get("content")
        if content:
            self.text += content
            events.append(TextDelta(content))
        for part in delta.get("tool_calls") or []:
            index = int(part.get("index", 0))
            if index not in self._calls:
                events += self._complete_calls(index, truncated=False)
                self._calls[index] = _CallParts()
            call = self._calls[index]
            function = part.get("function") or {}
            call.id += part.get("id") or ""
            call.name += function.get("name") or ""
            call.arguments += function.get("arguments") or ""
        for entry in malformed:
            bad = MalformedToolCall(
                raw_text=str(entry.get("raw_text", "")), reason=str(entry.get("reason", ""))
            )
            self.malformed.append(bad)
            events.append(bad)
        return events

    def _complete_calls(self, before: int | None, *, truncated: bool) -> list[ParserEvent]:
        """Turn the merged calls with an index below ``before`` (all: None) into events."""
        events: list[ParserEvent] = []
        for index in sorted(self._calls):
            if index in self._emitted or (before is not None and index >= before):
                continue
            self._emitted.add(index)
            event = _call_event(self._calls[index], truncated=truncated)
            if isinstance(event, ToolCall):
                self.tool_calls.append(event)
            else:
                self.malformed.append(event)
            events.append(event)
        return events


def _call_event(parts: _CallParts, *, truncated: bool) -> ToolCall | MalformedToolCall:
    raw = json.dumps({"name": parts.name, "arguments": parts.arguments}, ensure_ascii=False)
    try:
        arguments = json.loads(parts.arguments) if parts.arguments.strip() else {}
    except json.JSONDecodeError as exc:
        reason = f"arguments are not valid JSON: {exc.msg}"
        if truncated:
            reason = f"cut off at the token limit ({reason})"
        return MalformedToolCall(raw_text=raw, reason=reason)
    if not parts.name:
        return MalformedToolCall(raw_text=raw, reason="the tool name is missing")
    if not isinstance(arguments, dict):
        return MalformedToolCall(raw_text=raw, reason="tool arguments must be a JSON object")
    # Mistral's formats need nine alphanumeric characters; OpenAI-style ids ("call_...") are
    # replaced, as the local parser replaces a missing or invalid id.
    call_id = parts.id if _VALID_ID.fullmatch(parts.id) else new_tool_call_id()
    return ToolCall(id=call_id, name=parts.name, arguments=arguments)
