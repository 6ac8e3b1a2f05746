"""The streaming tool-call parser, fed token by token without a model or an event loop."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mistral_common.experimental.tools import _decode_tool_calls, _split_content_and_tool_calls
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.events import MalformedToolCall, TextDelta, ToolCall
from assistant.model.toolcall_parser import ToolCallParser
from assistant.testing.forced import reply_tokens

TOOL_CALLS_ID, EOS_ID = 9, 2
VERSIONS = ["v7", "v11", "v13"]
CALLS = [
    {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}, "id": "a1B2c3D4e"},
    {"name": "get_time", "arguments": {}, "id": "Zz9Yy8Xx7"},
]


@pytest.fixture(scope="module")
def tokenizers(tiny_model_factory) -> dict[str, MistralTokenizer]:
    return {
        v: MistralTokenizer.from_file(str(tiny_model_factory(v) / "tekken.json")) for v in VERSIONS
    }


def _parse(tokenizer: MistralTokenizer, tokens: list[int], truncated: bool = False):
    parser = ToolCallParser.for_tokenizer(tokenizer)
    events = []
    for token in tokens:
        if token == EOS_ID:
            break
        events.extend(parser.feed(token))
    events.extend(parser.finish(truncated=truncated))
    return parser, events


@pytest.mark.parametrize("version", VERSIONS)
def test_calls_match_mistral_commons_decoder(tokenizers, version: str) -> None:
    """Two calls after text parse to what mistral-common's own decoder reads."""
    tokenizer = tokenizers[version]
    tokens = reply_tokens(tokenizer, "Sure.", CALLS)
    parser, _ = _parse(tokenizer, tokens)
    content, call_tokens = _split_content_and_tool_calls(tokens[:-1], TOOL_CALLS_ID)
    expected = _decode_tool_calls(call_tokens, tokenizer.instruct_tokenizer.tokenizer)
    assert parser.text == tokenizer.decode(content) == "Sure."
    assert [(c.name, c.arguments) for c in parser.tool_calls] == [
        (e.function.name, json.loads(e.function.arguments)) for e in expected
    ]


@pytest.mark.parametrize("version", ["v7", "v11"])
def test_call_ids_written_by_the_model_are_kept(tokenizers, version: str) -> None:
    """Ids the model writes (v11 [CALL_ID], v7 "id") come through unchanged."""
    parser, _ = _parse(tokenizers[version], reply_tokens(tokenizers[version], None, CALLS))
    assert [c.id for c in parser.tool_calls] == ["a1B2c3D4e", "Zz9Yy8Xx7"]


def test_missing_ids_are_assigned_nine_alphanumerics(tokenizers) -> None:
    """v13 calls carry no id: each gets a fresh 9-character alphanumeric one."""
    parser, _ = _parse(tokenizers["v13"], reply_tokens(tokenizers["v13"], None, CALLS))
    ids = [c.id for c in parser.tool_calls]
    assert all(len(i) == 9 and i.isalnum() and i.isascii() for i in ids)
    assert ids[0] != ids[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_tool_call_syntax_never_becomes_text(tokenizers, version: str) -> None:
    """Text deltas hold only the text before [TOOL_CALLS]."""
    _, events = _parse(tokenizers[version], reply_tokens(tokenizers[version], "On it", CALLS))
    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert deltas == "On it"
    assert [type(e) for e in events if not isinstance(e, TextDelta)] == [ToolCall, ToolCall]


@pytest.mark.parametrize("version", VERSIONS)
def test_bad_json_is_a_malformed_call_with_the_raw_text(tokenizers, version: str) -> None:
    """Broken arguments become a MalformedToolCall carrying what the model wrote."""
    tokenizer = tokenizers[version]
    tekken = tokenizer.instruct_tokenizer.tokenizer
    if version == "v7":
        body = tekken.encode('[{"name": "set_light", "arguments": {"room": kitch', False, False)
    else:
        body = [
            *tekken.encode("set_light", False, False),
            32,
            *tekken.encode('{"room', False, False),
        ]
    parser, events = _parse(tokenizer, [TOOL_CALLS_ID, *body, EOS_ID])
    (bad,) = events
    assert isinstance(bad, MalformedToolCall)
    assert bad.raw_text.startswith("[TOOL_CALLS]")
    assert "set_light" in bad.raw_text
    assert parser.tool_calls == []


def test_unknown_shape_is_malformed(tokenizers) -> None:
    """A JSON value that is not a list of named calls is reported, not raised."""
    tekken = tokenizers["v7"].instruct_tokenizer.tokenizer
    _, events = _parse(tokenizers["v7"], [TOOL_CALLS_ID, *tekken.encode("[42]", False, False)])
    assert isinstance(events[0], MalformedToolCall)
    assert "name" in events[0].reason


@pytest.mark.parametrize("version", VERSIONS)
def test_a_call_cut_by_the_token_limit_says_so(tokenizers, version: str) -> None:
    """A truncated call is malformed and its reason names the token limit."""
    tokens = reply_tokens(tokenizers[version], None, CALLS[:1])
    _, events = _parse(tokenizers[version], tokens[: len(tokens) - 4], truncated=True)
    (bad,) = events
    assert isinstance(bad, MalformedToolCall)
    assert "token limit" in bad.reason


@functools.cache
def _tokenizer(folder: Path) -> MistralTokenizer:
    return MistralTokenizer.from_file(str(folder / "tekken.json"))


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t and "\x00" not in t))
def test_any_text_streams_back_exactly(text: str, tiny_model_dir: Path) -> None:
    """Whatever the reply text, multi-byte characters included, the deltas rebuild it exactly."""
    tokenizer = _tokenizer(tiny_model_dir)
    _, events = _parse(tokenizer, reply_tokens(tokenizer, text))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == text


@pytest.mark.parametrize("version", VERSIONS)
def test_a_call_is_known_begun_at_its_first_token_before_it_is_complete(
    tokenizers, version: str
) -> None:
    """call_begun turns on at [TOOL_CALLS] (the eager end of turn reads it), while the call
    itself is emitted only once its arguments are complete; text alone never sets it."""
    tokenizer = tokenizers[version]
    tokens = reply_tokens(tokenizer, "Sure.", CALLS[:1])
    parser = ToolCallParser.for_tokenizer(tokenizer)
    begun_at = None
    for index, token in enumerate(tokens[:-1]):
        parser.feed(token)
        if parser.call_begun and begun_at is None:
            begun_at = index
            assert parser.tool_calls == []
    assert begun_at == tokens.index(TOOL_CALLS_ID)
    parser.finish()
    assert [c.name for c in parser.tool_calls] == ["set_light"]
    talker, _ = _parse(tokenizer, reply_tokens(tokenizer, "Just text.", []))
    assert not talker.call_begun
