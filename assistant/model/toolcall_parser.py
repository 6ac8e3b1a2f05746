"""Split a reply, token by token, into streamed text and tool calls (pure, no I/O, no threads).

A tool call is recognised by the ``[TOOL_CALLS]`` token id, never by text (decoding with special
tokens skipped would erase it), so tool-call syntax never leaks into text deltas. After it come,
by tokenizer version:

- v7 (and older): a JSON list ``[{"name": ..., "arguments": {...}, "id": optional}, ...]``;
- v11: ``name[CALL_ID]id[ARGS]{...}``, one ``[TOOL_CALLS]`` per call;
- v13: ``name[ARGS]{...}``, one ``[TOOL_CALLS]`` per call.

A reply in the other version's shape is still read (the shape shows by the presence of
``[ARGS]``; v7 and older also accept the JSON list). A call that cannot be parsed (bad JSON,
unknown shape, cut off by the token limit) becomes a ``MalformedToolCall`` carrying the raw text.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from typing import Any

from assistant.events import (
    TOOL_CALL_ID_LENGTH,
    MalformedToolCall,
    TextDelta,
    ToolCall,
    new_tool_call_id,
)

ParserEvent = TextDelta | ToolCall | MalformedToolCall

JSON_LIST_VERSIONS = ("v1", "v2", "v3", "v7")
"""Tokenizer versions whose models write calls as one JSON list after ``[TOOL_CALLS]``."""

_VALID_ID = re.compile(rf"[A-Za-z0-9]{{{TOOL_CALL_ID_LENGTH}}}")


class ToolCallParser:
    """Feed generated token ids one at a time; get text deltas and tool calls back.

    ``piece(token_id)`` returns the bytes of a regular token and ``b""`` for a special one;
    ``special_name(token_id)`` spells special tokens for the raw text of malformed calls.
    """

    def __init__(
        self,
        piece: Callable[[int], bytes],
        special_name: Callable[[int], str],
        *,
        tool_calls_id: int,
        args_id: int,
        call_id_id: int,
        special_ids: frozenset[int],
        json_list_form: bool,
    ) -> None:
        self._piece = piece
        self._special_name = special_name
        self._tool_calls_id = tool_calls_id
        self._args_id = args_id
        self._call_id_id = call_id_id
        self._special_ids = special_ids
        self._json_list_form = json_list_form
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._segment: list[int] | None = None
        self.text = ""
        """All reply text so far (outside tool calls)."""
        self.tool_calls: list[ToolCall] = []
        self.malformed: list[MalformedToolCall] = []
        self.call_begun = False
        """Whether a ``[TOOL_CALLS]`` came: the model has decided to call a tool (the call
        itself is known only once its arguments are complete)."""

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> ToolCallParser:
        """A parser for a mistral-common ``MistralTokenizer``."""
        from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

        tekken = tokenizer.instruct_tokenizer.tokenizer

        def special_name(token_id: int) -> str:
            return str(tekken.id_to_piece(token_id))

        def special_id(name: str) -> int:
            return int(tekken.get_special_token(name))

        return cls(
            lambda token_id: tekken.id_to_byte_piece(token_id, SpecialTokenPolicy.IGNORE),
            special_name,
            tool_calls_id=special_id("[TOOL_CALLS]"),
            args_id=special_id("[ARGS]"),
            call_id_id=special_id("[CALL_ID]"),
            special_ids=frozenset(range(tekken.num_special_tokens)),
            json_list_form=tekken.version.value in JSON_LIST_VERSIONS,
        )

    def feed(self, token_id: int) -> list[ParserEvent]:
        """Take one generated token; return what became known."""
        events: list[ParserEvent] = []
        if token_id == self._tool_calls_id:
            self.call_begun = True
            if self._segment is None:
                events.extend(self._text(self._decoder.decode(b"", final=True)))
            else:
                events.extend(self._close_segment(truncated=False))
            self._segment = []
        elif self._segment is not None:
            self._segment.append(token_id)
        elif token_id not in self._special_ids:
            events.extend(self._text(self._decoder.decode(self._piece(token_id))))
        return events

    def finish(self, *, truncated: bool = False) -> list[ParserEvent]:
        """End of generation; ``truncated`` when it stopped at the token limit."""
        if self._segment is None:
            return self._text(self._decoder.decode(b"", final=True))
        events = self._close_segment(truncated=truncated)
        self._segment = None
        return events

    def _text(self, text: str) -> list[ParserEvent]:
        if not text:
            return []
        self.text += text
        return [TextDelta(text)]

    def _decode(self, tokens: list[int]) -> str:
        """Text of ``tokens`` with special tokens spelled out; multi-byte characters intact."""
        parts: list[str] = []
        pending = b""
        for token in tokens:
            if token in self._special_ids:
                parts.extend((pending.decode("utf-8", errors="replace"), self._special_name(token)))
                pending = b""
            else:
                pending += self._piece(token)
        parts.append(pending.decode("utf-8", errors="replace"))
        return "".join(parts)

    def _close_segment(self, *, truncated: bool) -> list[ParserEvent]:
        segment = self._segment or []
        raw = self._special_name(self._tool_calls_id) + self._decode(segment)
        try:
            if self._args_id in segment:
                calls = [self._named_call(segment)]
            elif self._json_list_form:
                calls = _json_calls(self._decode(segment))
            else:
                raise ValueError("the call has no [ARGS] after the tool name")
        except ValueError as exc:
            reason = str(exc)
            if truncated:
                reason = f"cut off at the token limit ({reason})"
            bad = MalformedToolCall(raw_text=raw, reason=reason)
            self.malformed.append(bad)
            return [bad]
        self.tool_calls.extend(calls)
        return list(calls)

    def _named_call(self, segment: list[int]) -> ToolCall:
        """``name[CALL_ID]id[ARGS]{...}`` (v11) or ``name[ARGS]{...}`` (v13)."""
        args_at = segment.index(self._args_id)
        head, body = segment[:args_at], segment[args_at + 1 :]
        call_id = None
        if self._call_id_id in head:
            split = head.index(self._call_id_id)
            head, call_id = head[:split], self._decode(head[split + 1 :]).strip()
        if any(t in self._special_ids for t in head + body):
            raise ValueError("unexpected control token inside the tool call")
        return _make_call(self._decode(head).strip(), _json_value(self._decode(body)), call_id)


def _json_value(text: str) -> Any:
    text = text.strip()
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc.msg}") from None
    except RecursionError:  # a looping reply of "[[[[...": the decoder recurses per level
        raise ValueError("the tool-call JSON is nested too deeply") from None
    if text[end:].strip():
        raise ValueError("unexpected text after the tool-call JSON")
    return value


def _json_calls(text: str) -> list[ToolCall]:
    """``[{"name": ..., "arguments": ..., "id": ...}, ...]`` (v7); a single object is accepted."""
    value = _json_value(text)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("the tool-call list is empty")
    calls = []
    for item in items:
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError('each tool call must be an object with a "name"')
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _json_value(arguments) if arguments.strip() else {}
        calls.append(_make_call(item["name"], arguments, item.get("id")))
    return calls


def _make_call(name: Any, arguments: Any, call_id: Any) -> ToolCall:
    if not isinstance(name, str) or not name:
        raise ValueError("the tool name is missing")
    if not isinstance(arguments, dict):
        raise ValueError("tool arguments must be a JSON object")
    valid_id = isinstance(call_id, str) and _VALID_ID.fullmatch(call_id) is not None
    return ToolCall(id=call_id if valid_id else new_tool_call_id(), name=name, arguments=arguments)
