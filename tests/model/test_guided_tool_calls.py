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
