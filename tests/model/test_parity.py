"""Parity with the reference usage: the worker generates exactly the reference's tokens.

Reference = the Voxtral documentation's usage: ``processor.apply_chat_template`` (or
``apply_transcription_request``) then greedy ``model.generate``, on the same tiny model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from mistral_common.protocol.instruct.messages import AssistantMessage, TextChunk, UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import Function, Tool
from transformers import AutoProcessor, VoxtralForConditionalGeneration

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from tests.model.conftest import Recorders

NEW_TOKENS = 12
GREEDY = GenerationParams(max_new_tokens=NEW_TOKENS, temperature=0.0)
EOS_ID, PAD_ID = 2, 11
LIGHT = Tool(
    function=Function(
        name="set_light",
        description="Switch a room's light.",
        parameters={"type": "object", "properties": {"room": {"type": "string"}}},
    )
)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path):
    model = VoxtralForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_model_dir)


def _until_eos(tokens: list[int]) -> list[int]:
    return tokens[: tokens.index(EOS_ID) + 1] if EOS_ID in tokens else tokens


def _reference_run(reference, inputs) -> tuple[list[list[int]], torch.Tensor]:
    model, _ = reference
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    width = inputs["input_ids"].shape[1]
    return [_until_eos(row[width:].tolist()) for row in out], inputs["input_ids"]


def _audio(path: Path) -> dict[str, Any]:
    return {"type": "audio", "path": str(path)}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


async def _worker_run(make_worker, messages: list[Any]) -> tuple[list[int], torch.Tensor]:
    recorders = Recorders()
    worker = make_worker("v7", recorders)
    done = await worker.respond(messages, params=GREEDY).done()
    assert done.finish_reason in ("stop", "length")
    (recorder,) = recorders.calls
    assert recorder.prompt is not None
    return recorder.generated(), recorder.prompt


PATTERNS = {
    "audio and text": (
        lambda c: [{"role": "user", "content": [_audio(c["short"]), _text("What is this?")]}],
        lambda c: [UserMessage(content=[audio_chunk(c["short"]), TextChunk(text="What is this?")])],
    ),
    "two audios and text": (
        lambda c: [
            {
                "role": "user",
                "content": [_audio(c["short"]), _audio(c["other"]), _text("Compare them.")],
            }
        ],
        lambda c: [
            UserMessage(
                content=[
                    audio_chunk(c["short"]),
                    audio_chunk(c["other"]),
                    TextChunk(text="Compare them."),
                ]
            )
        ],
    ),
    "multi-turn": (
        lambda c: [
            {"role": "user", "content": [_audio(c["short"]), _text("Summary?")]},
            {"role": "assistant", "content": "The user wants the lights on."},
            {"role": "user", "content": [_audio(c["other"]), _text("And now?")]},
        ],
        lambda c: [
            UserMessage(content=[audio_chunk(c["short"]), TextChunk(text="Summary?")]),
            AssistantMessage(content="The user wants the lights on."),
            UserMessage(content=[audio_chunk(c["other"]), TextChunk(text="And now?")]),
        ],
    ),
    "text only": (
        lambda c: [{"role": "user", "content": [_text("Hello there, how are you?")]}],
        lambda c: [UserMessage(content=[TextChunk(text="Hello there, how are you?")])],
    ),
    "audio only": (
        lambda c: [{"role": "user", "content": [_audio(c["other"])]}],
        lambda c: [UserMessage(content=[audio_chunk(c["other"])])],
    ),
    "long audio (two windows)": (
        lambda c: [{"role": "user", "content": [_audio(c["long"]), _text("Transcribe.")]}],
        lambda c: [UserMessage(content=[audio_chunk(c["long"]), TextChunk(text="Transcribe.")])],
    ),
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
async def test_worker_generates_the_reference_tokens(
    pattern: str, reference, make_worker, clips
) -> None:
    """For each documented usage pattern, prompt ids and greedy tokens equal the reference's."""
    reference_messages, worker_messages = PATTERNS[pattern]
    _, processor = reference
    expected, expected_prompt = _reference_run(
        reference, processor.apply_chat_template(reference_messages(clips))
    )
    generated, prompt = await _worker_run(make_worker, worker_messages(clips))
    assert prompt.tolist() == expected_prompt.tolist()
    assert len(expected[0]) > 1
    assert generated == expected[0]


async def test_batch_of_two_conversations_matches_the_reference_batch(
    reference, make_worker, clips
) -> None:
    """respond_batch gives each conversation the reference's batched greedy tokens."""
    _, processor = reference
    expected, _ = _reference_run(
        reference,
        processor.apply_chat_template(
            [
                [{"role": "user", "content": [_audio(clips["short"]), _text("Hi")]}],
                [{"role": "user", "content": [_text("A longer text-only question, please.")]}],
            ]
        ),
    )
    recorders = Recorders()
    worker = make_worker("v7", recorders)
    streams = worker.respond_batch(
        [
            [UserMessage(content=[audio_chunk(clips["short"]), TextChunk(text="Hi")])],
            [UserMessage(content=[TextChunk(text="A longer text-only question, please.")])],
        ],
        params=GREEDY,
    )
    for stream in streams:
        await stream.done()
    (recorder,) = recorders.calls  # one batched generate for both
    assert [recorder.generated(0), recorder.generated(1)] == expected


async def test_with_tools_the_worker_matches_mistral_commons_encoding(
    reference, make_worker, clips
) -> None:
    """With tools (which apply_chat_template drops), prompt and tokens match mistral-common's."""
    _, processor = reference
    messages = [UserMessage(content=[audio_chunk(clips["short"]), TextChunk(text="Lights?")])]
    recorders = Recorders()
    worker = make_worker("v7", recorders)
    encoded = worker.tokenizer.encode_chat_completion(
        ChatCompletionRequest(messages=messages, tools=[LIGHT])
    )
    features = processor.feature_extractor(
        [audio.audio_array for audio in encoded.audios], sampling_rate=16000, return_tensors="pt"
    )["input_features"]
    ids = torch.tensor([encoded.tokens])
    expected, _ = _reference_run(
        reference,
        {"input_ids": ids, "attention_mask": torch.ones_like(ids), "input_features": features},
    )
    await worker.respond(messages, tools=[LIGHT], params=GREEDY).done()
    (recorder,) = recorders.calls
    assert recorder.prompt is not None
    assert recorder.prompt.tolist() == [encoded.tokens]
    tekken = worker.tokenizer.instruct_tokenizer.tokenizer
    assert tekken.get_special_token("[AVAILABLE_TOOLS]") in encoded.tokens
    assert len(expected[0]) > 1
    assert recorder.generated() == expected[0]


@pytest.mark.parametrize("language", ["en", None])
async def test_transcription_matches_the_reference(
    language: str | None, reference, make_worker, clips
) -> None:
    """transcribe() generates apply_transcription_request's greedy tokens, with or without lang."""
    _, processor = reference
    kwargs = {"language": language} if language else {}
    inputs = processor.apply_transcription_request(
        audio=str(clips["short"]), model_id="tiny", **kwargs
    )
    expected, expected_prompt = _reference_run(reference, inputs)
    recorders = Recorders()
    worker = make_worker("v7", recorders)
    await worker.transcribe(clips["short"], language=language, max_new_tokens=NEW_TOKENS)
    (recorder,) = recorders.calls
    assert recorder.prompt is not None
    assert recorder.prompt.tolist() == expected_prompt.tolist()
    assert recorder.generated() == expected[0]
