"""Guided tool calls: once a call begins, only a call the tools accept can be written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from jsonschema import Draft202012Validator
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.model.guide import GuideProcessor, ToolCallGuide, calls_schema
from assistant.testing.forced import reply_tokens

DEMO_TEKKEN = Path(__file__).parents[2] / "assistant" / "model" / "demo" / "tekken.json"
TOOL_CALLS_ID, EOS_ID = 9, 2

LIGHT = {
    "type": "function",
    "function": {
        "name": "set_light",
        "parameters": {
            "type": "object",
            "properties": {
                "room": {"type": "string", "enum": ["kitchen", "office"]},
                "state": {"type": "string", "enum": ["on", "off"]},
                "brightness": {"type": "integer", "minimum": 0, "maximum": 255},
            },
            "required": ["room", "state"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
TOOLS = [LIGHT, CLOCK]


@pytest.fixture(scope="module")
def tokenizer() -> MistralTokenizer:
    return MistralTokenizer.from_file(str(DEMO_TEKKEN))


@pytest.fixture(scope="module")
def guide(tokenizer: MistralTokenizer) -> ToolCallGuide:
    return ToolCallGuide(tokenizer.instruct_tokenizer.tokenizer, TOOL_CALLS_ID)


def _decode(tokenizer: MistralTokenizer, tokens: list[int]) -> str:
    tekken = tokenizer.instruct_tokenizer.tokenizer
    return b"".join(tekken.id_to_byte_piece(t, "ignore") for t in tokens).decode()


@pytest.mark.parametrize(
    ("calls", "valid"),
    [
        ([{"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}}], True),
        ([{"name": "get_time", "arguments": {}},
          {"name": "set_light", "arguments": {"room": "office", "state": "off",
                                               "brightness": 255}}], True),
        ([], False),
        ([{"name": "play_music", "arguments": {}}], False),
        ([{"name": "set_light", "arguments": {"room": "garage", "state": "on"}}], False),
        ([{"name": "set_light", "arguments": {"room": "kitchen"}}], False),
        ([{"name": "set_light", "arguments": {"room": "kitchen", "state": "on",
                                               "brightness": 256}}], False),
        ([{"name": "set_light", "arguments": {"room": "kitchen", "state": "on", "x": 1}}], False),
        ([{"name": "get_time", "arguments": {}, "id": "abc"}], False),
        ([{"name": "get_time", "arguments": {}, "id": "a1B2c3D4e"}], True),
    ],
)  # fmt: skip
def test_the_call_schema_takes_exactly_the_calls_the_tools_accept(
    calls: list[dict[str, Any]], valid: bool
) -> None:
    assert Draft202012Validator(calls_schema(TOOLS)).is_valid(calls) is valid


def test_a_call_as_mistral_common_writes_it_passes_token_by_token(
    tokenizer: MistralTokenizer, guide: ToolCallGuide
) -> None:
    """The separators and key order of a real v7 call list: every token is allowed, then
    ``</s>``."""
    call = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on", "brightness": 9}}
    tokens = reply_tokens(tokenizer, None, [call])
    assert tokens[0] == TOOL_CALLS_ID and tokens[-1] == EOS_ID
    row = guide.row(TOOLS)
    assert row is not None
    row.feed(tokens[0])
    for token in tokens[1:]:
        allowed = row.allowed()
        assert allowed is not None and allowed[token], _decode(tokenizer, [token])
        row.feed(token)
    assert row.done


def _walk(guide: ToolCallGuide, seed: int, steps: int = 300) -> tuple[list[int], bool]:
    """A "model" of random logits, guided: the tokens after ``[TOOL_CALLS]`` and whether it
    reached ``</s>``."""
    generator = torch.Generator().manual_seed(seed)
    processor = GuideProcessor([guide.row(TOOLS)])
    ids = torch.tensor([[TOOL_CALLS_ID]])
    processor(torch.tensor([[1]]), torch.zeros(1, guide.vocab_size))  # the prompt's step
    out: list[int] = []
    for _ in range(steps):
        scores = torch.randn(1, guide.vocab_size, generator=generator)
        token = int(processor(ids, scores).argmax())
        out.append(token)
        if token == EOS_ID:
            return out, True
        ids = torch.tensor([[token]])
    return out, False


def test_random_logits_guided_always_write_valid_calls(
    tokenizer: MistralTokenizer, guide: ToolCallGuide
) -> None:
    """Whatever the model would have chosen, the calls it writes parse and fit the tools."""
    validator = Draft202012Validator(calls_schema(TOOLS))
    ended = 0
    for seed in range(40):
        tokens, finished = _walk(guide, seed)
        if finished:
            ended += 1
            calls = json.loads(_decode(tokenizer, tokens[:-1]))
            assert validator.is_valid(calls), calls
    assert ended >= 20  # random logits may go on adding calls to the list past 300 tokens


def test_text_without_a_call_is_left_alone(guide: ToolCallGuide) -> None:
    processor = GuideProcessor([guide.row(TOOLS), None])
    scores = torch.randn(2, guide.vocab_size)
    for token in (1500, 1600, 1700):
        out = processor(torch.tensor([[token], [token]]), scores.clone())
        assert torch.equal(out, scores)


def test_a_refused_token_forced_in_ends_the_guidance_not_the_generation(
    guide: ToolCallGuide,
) -> None:
    """The test kit's scripted replies force tokens after the guide: a malformed call they
    force goes through, and the row is left alone from then on."""
    row = guide.row(TOOLS)
    assert row is not None
    row.feed(TOOL_CALLS_ID)
    allowed = row.allowed()
    assert allowed is not None and not allowed[1500]
    row.feed(1500)
    assert row.done and row.allowed() is None


def test_no_tools_no_guide(guide: ToolCallGuide) -> None:
    assert guide.row(None) is None and guide.row([]) is None


def test_a_tool_set_llguidance_cannot_compile_goes_unguided_with_one_warning(
    guide: ToolCallGuide, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}
    tools = [LIGHT, {"type": "function", "function": {"name": "odd", "parameters": broken}}]
    with caplog.at_level("WARNING", logger="assistant.model.guide"):
        assert guide.row(tools) is None
        assert guide.row(tools) is None
    (record,) = caplog.records
    assert "set_light, odd" in record.getMessage() and "nowhere" in record.getMessage()
    assert guide.row(TOOLS) is not None  # other tool sets are still guided


@pytest.mark.parametrize("version", ["v11", "v13"])
def test_models_writing_name_args_calls_are_not_guided(tmp_path: Path, version: str) -> None:
    from assistant.model.worker import ModelWorker
    from assistant.testing.tiny_model import build_tiny_model

    worker = ModelWorker.load(build_tiny_model(tmp_path / version, version), device="cpu")
    try:
        assert worker._guide is None
    finally:
        worker.close()


async def test_the_demo_model_guided_stays_inside_the_tools_it_is_offered() -> None:
    """The real path (worker, engine, ``generate``): offered lights only in the office and
    hallway, "Turn the kitchen light on." unguided names the kitchen; guided, the call is one
    the tools accept."""
    from mistral_common.protocol.instruct.messages import UserMessage

    from assistant.audio.io import audio_chunk
    from assistant.config import ModelSettings
    from assistant.model.checkpoint import DEMO_MODEL
    from assistant.model.worker import ModelWorker
    from assistant.model_worker import GREEDY
    from assistant.testing.speech import synthesize
    from training.conversations import declared_tools

    repo = Path(__file__).parents[2]
    tools = [t.model_dump() for t in declared_tools(repo / "tools.yaml").mistral_tools()]
    (light,) = [t for t in tools if t["function"]["name"] == "set_light"]
    light["function"]["parameters"]["properties"]["room"]["enum"] = ["office", "hallway"]
    message = UserMessage(content=[audio_chunk(synthesize("Turn the kitchen light on."))])
    validator = Draft202012Validator(light["function"]["parameters"])
    for guided in (False, True):
        settings = ModelSettings(id=DEMO_MODEL, device="cpu", guided_tool_calls=guided)
        worker = ModelWorker.load(settings=settings, dtype="float32")
        try:
            done = await worker.respond([message], tools=tools, params=GREEDY).done()
        finally:
            worker.close()
        (call,) = done.tool_calls
        assert call.name == "set_light"
        assert validator.is_valid(dict(call.arguments)) is guided, call.arguments


def _accepts(guide: ToolCallGuide, tools: list[Any], tokens: list[int]) -> bool:
    """Whether the guide lets ``tokens`` (after ``[TOOL_CALLS]``) through, one by one."""
    row = guide.row(tools)
    assert row is not None
    row.feed(TOOL_CALLS_ID)
    for token in tokens:
        allowed = row.allowed()
        if allowed is None or not allowed[token]:
            return False
        row.feed(token)
    return True


def test_tool_sets_that_differ_only_in_key_order_keep_their_own_order(
    tokenizer: MistralTokenizer, guide: ToolCallGuide
) -> None:
    """Calls are written in the schema's property order: a cached grammar of the same tools in
    another order must not be used for them."""

    def tool(order: list[str]) -> dict[str, Any]:
        properties = {key: {"type": "integer"} for key in order}
        parameters = {"type": "object", "properties": properties, "additionalProperties": False}
        return {"type": "function", "function": {"name": "pair", "parameters": parameters}}

    ab = reply_tokens(tokenizer, None, [{"name": "pair", "arguments": {"a": 1, "b": 2}}])[1:]
    ba = reply_tokens(tokenizer, None, [{"name": "pair", "arguments": {"b": 2, "a": 1}}])[1:]
    assert _accepts(guide, [tool(["a", "b"])], ab)
    assert _accepts(guide, [tool(["b", "a"])], ba)
    assert not _accepts(guide, [tool(["a", "b"])], ba)


def test_local_references_of_a_tool_schema_still_resolve(
    tokenizer: MistralTokenizer, guide: ToolCallGuide
) -> None:
    """MCP servers built on pydantic send ``$defs`` and ``#/$defs/...`` references."""
    parameters = {
        "type": "object",
        "properties": {"unit": {"$ref": "#/$defs/Unit"}},
        "required": ["unit"],
        "$defs": {"Unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    }
    tools = [{"type": "function", "function": {"name": "temp", "parameters": parameters}}]
    assert guide.row(tools) is not None

    def call(unit: str) -> list[int]:
        arguments = {"unit": unit}
        return reply_tokens(tokenizer, None, [{"name": "temp", "arguments": arguments}])[1:]

    assert _accepts(guide, tools, call("celsius"))
    assert not _accepts(guide, tools, call("kelvin"))


def test_a_batch_masks_only_its_rows_inside_a_call(guide: ToolCallGuide) -> None:
    """Rows in a call, in text and without tools side by side; the model's vocabulary may be
    wider than the tokenizer's (the extra ids are never allowed inside a call)."""
    processor = GuideProcessor([guide.row(TOOLS), guide.row(TOOLS), None])
    width = guide.vocab_size + 64
    processor(torch.ones(3, 5, dtype=torch.long), torch.zeros(3, width))  # the prompt's step
    scores = processor(
        torch.tensor([[TOOL_CALLS_ID], [1500], [TOOL_CALLS_ID]]), torch.zeros(3, width)
    )
    inside = torch.isfinite(scores[0])
    assert 0 < int(inside.sum()) < 10 and not inside[guide.vocab_size :].any()
    assert torch.isfinite(scores[1]).all() and torch.isfinite(scores[2]).all()


def test_a_failing_guide_leaves_its_row_unguided_and_the_others_guided(
    guide: ToolCallGuide, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, sound = guide.row(TOOLS), guide.row(TOOLS)
    assert broken is not None and sound is not None

    def fail() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(broken, "allowed", fail)
    processor = GuideProcessor([broken, sound])
    processor(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, guide.vocab_size))
    scores = processor(torch.full((2, 1), TOOL_CALLS_ID), torch.zeros(2, guide.vocab_size))
    assert broken.done and torch.isfinite(scores[0]).all()
    assert not torch.isfinite(scores[1]).all()
