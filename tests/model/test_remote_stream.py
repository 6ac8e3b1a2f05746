"""Streamed chat-completion chunks into model events, and the request body (pure, no server)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
from mistral_common.protocol.instruct.messages import SystemMessage, TextChunk, UserMessage
from mistral_common.protocol.instruct.tool_calls import Function, Tool
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.events import MalformedToolCall, TextDelta, ToolCall
from assistant.model.remote_request import (
    chat_body,
    count_clips,
    openai_messages,
    session_headers,
)
from assistant.model.remote_stream import ChunkReader
from assistant.model.toolcall_parser import ToolCallParser
from assistant.testing.forced import reply_tokens
from assistant.testing.tiny_model import EOS_ID


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir) -> MistralTokenizer:
    return MistralTokenizer.from_file(str(tiny_model_dir / "tekken.json"))


def _reader(tokenizer: MistralTokenizer) -> ChunkReader:
    return ChunkReader(ToolCallParser.for_tokenizer(tokenizer), EOS_ID)


def _chunk(choice: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, **(choice or {})}] if choice else [], **top}


def _local_events(tokenizer: MistralTokenizer, tokens: list[int], truncated: bool) -> list[Any]:
    parser = ToolCallParser.for_tokenizer(tokenizer)
    events = [e for t in tokens if t != EOS_ID for e in parser.feed(t)]
    return events + parser.finish(truncated=truncated)


def _ids_blank(events: list[Any]) -> list[Any]:
    return [dataclasses.replace(e, id="") if isinstance(e, ToolCall) else e for e in events]


def test_token_ids_give_the_parser_events(tokenizer: MistralTokenizer) -> None:
    """Token ids split over chunks: the events the local worker's parser gives, </s> ignored."""
    tokens = reply_tokens(tokenizer, "Ok ✓.", [{"name": "f", "arguments": {"a": 1}}])
    reader = _reader(tokenizer)
    events = []
    for start in range(0, len(tokens), 3):
        part = tokens[start : start + 3]
        events += reader.feed(_chunk({"token_ids": part, "delta": {"content": "ignored"}}))
    events += reader.feed(_chunk({"token_ids": [], "finish_reason": "tool_calls"}))
    events += reader.finish()
    assert _ids_blank(events) == _ids_blank(_local_events(tokenizer, tokens, False))
    assert reader.text == "Ok ✓." and [c.name for c in reader.tool_calls] == ["f"]
    assert reader.generated_tokens == len(tokens)


def test_a_call_cut_by_the_length_limit_is_malformed(tokenizer: MistralTokenizer) -> None:
    """finish_reason length inside a call: a MalformedToolCall saying it was cut off."""
    tokens = reply_tokens(tokenizer, None, [{"name": "f", "arguments": {"room": "hall"}}])[:8]
    reader = _reader(tokenizer)
    reader.feed(_chunk({"token_ids": tokens, "finish_reason": "length"}))
    events = reader.finish()
    assert isinstance(events[-1], MalformedToolCall)
    assert events[-1].reason.startswith("cut off at the token limit")


def test_deltas_without_ids_give_text_and_merged_calls(tokenizer: MistralTokenizer) -> None:
    """No token ids: text deltas as sent, a call merged from its pieces, ids of 9 kept."""
    reader = _reader(tokenizer)
    events = reader.feed(_chunk({"delta": {"role": "assistant", "content": ""}}))
    events += reader.feed(_chunk({"delta": {"content": "Hi "}}))
    events += reader.feed(_chunk({"delta": {"content": "there."}}))
    call = {"index": 0, "id": "abcDEF123", "function": {"name": "f", "arguments": '{"a": '}}
    events += reader.feed(_chunk({"delta": {"tool_calls": [call]}}))
    more = {"index": 0, "function": {"arguments": "1}"}}
    events += reader.feed(_chunk({"delta": {"tool_calls": [more]}, "finish_reason": "tool_calls"}))
    events += reader.finish()
    assert events == [TextDelta("Hi "), TextDelta("there."), ToolCall("abcDEF123", "f", {"a": 1})]


def test_a_begun_call_shows_before_it_is_complete(tokenizer: MistralTokenizer) -> None:
    """call_begun: at [TOOL_CALLS] in token ids, at the first tool-call delta without them;
    not for text."""
    tokens = reply_tokens(tokenizer, "Ok.", [{"name": "f", "arguments": {"a": 1}}])
    tekken = tokenizer.instruct_tokenizer.tokenizer
    at = tokens.index(tekken.get_special_token("[TOOL_CALLS]"))
    by_ids = _reader(tokenizer)
    by_ids.feed(_chunk({"token_ids": tokens[:at]}))
    assert not by_ids.call_begun  # text so far, not a call
    assert by_ids.feed(_chunk({"token_ids": tokens[at : at + 2]})) == []
    assert by_ids.call_begun and by_ids.tool_calls == []
    by_deltas = _reader(tokenizer)
    by_deltas.feed(_chunk({"delta": {"content": "Ok."}}))
    assert not by_deltas.call_begun
    call = {"index": 0, "id": "abcDEF123", "function": {"name": "f", "arguments": '{"a": '}}
    assert by_deltas.feed(_chunk({"delta": {"tool_calls": [call]}})) == []
    assert by_deltas.call_begun


def test_a_second_call_completes_the_first(tokenizer: MistralTokenizer) -> None:
    """A call is emitted as soon as the next one starts (its tool can start at once)."""
    reader = _reader(tokenizer)
    first = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}
    second = {"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}
    assert reader.feed(_chunk({"delta": {"tool_calls": [first]}})) == []
    events = reader.feed(_chunk({"delta": {"tool_calls": [second]}}))
    assert [e.name for e in events] == ["f"]  # type: ignore[union-attr]
    assert len(events[0].id) == 9 and events[0].id.isalnum()  # type: ignore[union-attr]
    assert [e.name for e in reader.finish()] == ["g"]  # type: ignore[union-attr]


def test_bad_arguments_and_reported_malformed_calls_are_malformed(
    tokenizer: MistralTokenizer,
) -> None:
    """Arguments that are not JSON, and voxtral-assistant's malformed_tool_calls list."""
    reader = _reader(tokenizer)
    bad = {"index": 0, "id": "x", "function": {"name": "f", "arguments": '{"a": '}}
    events = reader.feed(
        _chunk(
            {
                "delta": {"tool_calls": [bad]},
                "malformed_tool_calls": [{"raw_text": "[TOOL_CALLS]oops", "reason": "bad"}],
            }
        )
    )
    events += reader.finish()
    assert events[0] == MalformedToolCall("[TOOL_CALLS]oops", "bad")
    assert isinstance(events[1], MalformedToolCall)
    assert events[1].reason.startswith("arguments are not valid JSON")


def test_usage_is_read_from_the_last_chunk(tokenizer: MistralTokenizer) -> None:
    """The usage-only chunk (no choices) gives prompt and completion tokens."""
    reader = _reader(tokenizer)
    reader.feed(_chunk(usage={"prompt_tokens": 777, "completion_tokens": 5}))
    assert (reader.prompt_tokens, reader.completion_tokens) == (777, 5)


def test_the_body_streams_with_token_ids_and_placed_instructions(
    tokenizer: MistralTokenizer, speech_pcm: np.ndarray
) -> None:
    """Instructions move into the audio turn (v7), audio is base64 WAV, ids are asked for."""
    tool = Tool(function=Function(name="f", description="d", parameters={"type": "object"}))
    messages = [
        SystemMessage(content="Be brief."),
        UserMessage(content=[audio_chunk(speech_pcm, 16000), TextChunk(text="Hi")]),
    ]
    wire, tools = openai_messages(messages, [tool], "v7")
    body = chat_body("m", wire, tools, GenerationParams(seed=3), max_tokens=9)
    assert [m["role"] for m in body["messages"]] == ["user"]
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Be brief."}
    assert parts[1]["type"] == "input_audio" and parts[1]["input_audio"]["format"] == "wav"
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["return_token_ids"] is True
    assert (body["max_tokens"], body["seed"], body["tool_choice"]) == (9, 3, "auto")
    assert body["tools"][0]["function"]["name"] == "f"
    json.dumps(body)  # all of it is JSON


def test_clips_are_counted_over_the_whole_history(speech_pcm: np.ndarray) -> None:
    """Every audio chunk of every message counts."""
    clip = audio_chunk(speech_pcm, 16000)
    messages = [UserMessage(content=[clip, clip]), UserMessage(content="text")]
    assert count_clips(messages) == 2


def test_the_session_header_carries_the_conversation() -> None:
    """The configured header names the conversation; none without a name or a conversation."""
    assert session_headers("X-Session-Id", "sess_1") == {"X-Session-Id": "sess_1"}
    assert session_headers("", "sess_1") == {}
    assert session_headers("X-Session-Id", None) == {}


@pytest.fixture(scope="module")
def speech_pcm() -> np.ndarray:
    from assistant.testing.speech import synthesize

    return synthesize("Turn on the light")
