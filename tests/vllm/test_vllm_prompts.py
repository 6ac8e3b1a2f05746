"""vLLM builds the local worker's prompts, answers as it does, and enforces Voxtral's rules."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import torch
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    TextChunk,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.model.worker import ModelWorker
from tests.support.vllm_server import VllmServer
from tests.vllm.conftest import LIGHT_TOOL, audio_part

pytestmark = pytest.mark.slow

MISTRAL_TOOLS = [Tool(function=Function(**LIGHT_TOOL["function"]))]


def _chat(server: VllmServer, messages: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": server.model, "messages": messages, **body},
        timeout=120,
    )


def _prompt_ids(server: VllmServer, messages: list[dict[str, Any]], **body: Any) -> list[int]:
    response = _chat(server, messages, max_tokens=1, return_token_ids=True, **body)
    assert response.status_code == 200, response.text
    return list(response.json()["prompt_token_ids"])


def test_audio_tools_and_instructions_give_the_local_prompt(
    vllm_server: VllmServer, same_weights_worker: ModelWorker, speech: dict[str, Any]
) -> None:
    """Instructions as the user turn's first text chunk, audio and tools: the same token ids."""
    local = same_weights_worker._prompts.chat(
        [
            SystemMessage(content="Be brief."),
            UserMessage(content=[audio_chunk(speech["pcm"], 16000), TextChunk(text="Answer.")]),
        ],
        MISTRAL_TOOLS,
    )
    remote = _prompt_ids(
        vllm_server,
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Be brief."},
                    audio_part(speech["b64"]),
                    {"type": "text", "text": "Answer."},
                ],
            }
        ],
        tools=[LIGHT_TOOL],
    )
    assert remote == local.tokens


def test_a_tool_round_gives_the_local_prompt(
    vllm_server: VllmServer, same_weights_worker: ModelWorker, speech: dict[str, Any]
) -> None:
    """A history with a tool call, its result and a new turn: the same token ids."""
    arguments = {"room": "kitchen", "on": True}
    local = same_weights_worker._prompts.chat(
        [
            UserMessage(content=[audio_chunk(speech["pcm"], 16000)]),
            AssistantMessage(
                tool_calls=[
                    ToolCall(
                        id="a1B2c3D4e",
                        function=FunctionCall(name="set_light", arguments=json.dumps(arguments)),
                    )
                ]
            ),
            ToolMessage(tool_call_id="a1B2c3D4e", name="set_light", content='{"ok": true}'),
            AssistantMessage(content="The kitchen light is on."),
            UserMessage(content="Thanks."),
        ],
        MISTRAL_TOOLS,
    )
    remote = _prompt_ids(
        vllm_server,
        [
            {"role": "user", "content": [audio_part(speech["b64"])]},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "a1B2c3D4e",
                        "type": "function",
                        "function": {"name": "set_light", "arguments": json.dumps(arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "a1B2c3D4e", "content": '{"ok": true}'},
            {"role": "assistant", "content": "The kitchen light is on."},
            {"role": "user", "content": "Thanks."},
        ],
        tools=[LIGHT_TOOL],
    )
    assert remote == local.tokens


class _Recorder:
    """Keeps the log-probabilities of every local decode step."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(torch.log_softmax(scores[0].double(), -1))
        return scores


async def _local_greedy(model_dir: Any, pcm: Any, steps: int) -> list[torch.Tensor]:
    """The local worker's log-probabilities at each greedy step for [clip, "Hi."] + tools."""
    recorder = _Recorder()
    worker = ModelWorker.load(
        model_dir, device="cpu", dtype="float32", logits_processor_factory=lambda n: [recorder]
    )
    try:
        message = UserMessage(content=[audio_chunk(pcm, 16000), TextChunk(text="Hi.")])
        params = GenerationParams(max_new_tokens=steps, temperature=0.0)
        await worker.respond([message], tools=MISTRAL_TOOLS, params=params).done()
    finally:
        worker.close()
    return recorder.steps


TOLERANCE = 1e-4
"""float32 on both sides: measured agreement 5e-7 (bfloat16 vLLM: 3e-3, too coarse to judge
audio by, since the tiny random model's log-probabilities move only ~5e-3 between two clips)."""


@pytest.mark.parametrize("clip", ["short", "two windows"])
async def test_greedy_reply_equals_the_local_one(
    vllm_server: VllmServer, vllm_model_dir: Any, clips: dict[str, Any], clip: str
) -> None:
    """Same weights, same prompt: the same greedy tokens, log-probabilities within 1e-4."""
    local = await _local_greedy(vllm_model_dir, clips[clip]["pcm"], 16)
    response = _chat(
        vllm_server,
        [
            {
                "role": "user",
                "content": [audio_part(clips[clip]["b64"]), {"type": "text", "text": "Hi."}],
            }
        ],
        tools=[LIGHT_TOOL],
        max_tokens=16,
        temperature=0,
        ignore_eos=True,
        return_token_ids=True,
        logprobs=True,
        top_logprobs=3,
        return_tokens_as_token_ids=True,
    )
    choice = response.json()["choices"][0]
    assert choice["token_ids"] == [int(step.argmax()) for step in local]
    for step, logprobs in zip(local, choice["logprobs"]["content"], strict=True):
        for top in logprobs["top_logprobs"]:
            token = int(top["token"].removeprefix("token_id:"))
            assert abs(top["logprob"] - float(step[token])) < TOLERANCE


async def test_the_tolerance_tells_clips_apart(vllm_model_dir: Any, clips: dict[str, Any]) -> None:
    """Another clip moves the local log-probabilities by far more than the tolerance."""
    short = await _local_greedy(vllm_model_dir, clips["short"]["pcm"], 1)
    other = await _local_greedy(vllm_model_dir, clips["other"]["pcm"], 1)
    assert float((short[0] - other[0]).abs().max()) > 10 * TOLERANCE


def test_six_clips_are_refused(vllm_server: VllmServer, speech: dict[str, Any]) -> None:
    """At most 5 audio clips per request, counting the whole history."""
    history: list[dict[str, Any]] = []
    for _ in range(5):
        history += [
            {"role": "user", "content": [audio_part(speech["b64"])]},
            {"role": "assistant", "content": "ok"},
        ]
    five = history[:-1]
    assert _chat(vllm_server, five, max_tokens=1).status_code == 200
    six = [*history, {"role": "user", "content": [audio_part(speech["b64"])]}]
    response = _chat(vllm_server, six, max_tokens=1)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "At most 5 audio(s) may be provided in one prompt. (parameter=audio)"
    )


def test_a_clip_named_by_uuid_alone_is_refused(
    vllm_server: VllmServer, speech: dict[str, Any]
) -> None:
    """Every turn must resend its clips: mistral-common needs the samples to count tokens."""
    known = {"role": "user", "content": [{**audio_part(speech["b64"]), "uuid": "clip-1"}]}
    assert _chat(vllm_server, [known], max_tokens=1).status_code == 200
    by_uuid = {"type": "input_audio", "input_audio": None, "uuid": "clip-1"}
    response = _chat(vllm_server, [{"role": "user", "content": [by_uuid]}], max_tokens=1)
    assert response.status_code == 400
    assert "2 validation errors for AudioChunk" in response.json()["error"]["message"]


def test_a_system_message_with_audio_is_refused(
    vllm_server: VllmServer, speech: dict[str, Any]
) -> None:
    """Below tokenizer v13 a system message cannot accompany audio."""
    response = _chat(
        vllm_server,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [audio_part(speech["b64"])]},
        ],
        max_tokens=1,
    )
    assert response.status_code == 400
    assert "not allowed prior to the tokenizer version 13" in response.json()["error"]["message"]


def test_tool_call_ids_shorter_than_nine_are_refused(
    vllm_server: VllmServer, speech: dict[str, Any]
) -> None:
    """Tool-call ids are 9 characters (longer ones are cut to their last 9 by vLLM)."""
    call = {"name": "set_light", "arguments": '{"room": "kitchen"}'}
    messages = [
        {"role": "user", "content": "Light."},
        {
            "role": "assistant",
            "tool_calls": [{"id": "abcdefgh", "type": "function", "function": call}],
        },
        {"role": "tool", "tool_call_id": "abcdefgh", "content": "{}"},
    ]
    response = _chat(vllm_server, messages, tools=[LIGHT_TOOL], max_tokens=1)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Tool call id was abcdefgh but must be a-z, A-Z, 0-9, with a length of 9."
    )


def _metric(server: VllmServer, name: str) -> float:
    for line in httpx.get(f"{server.root_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def _block_size(server: VllmServer) -> int:
    for line in httpx.get(f"{server.root_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            return int(line.split('block_size="')[1].split('"')[0])
    raise AssertionError("no cache_config_info metric")


def test_a_repeated_clip_comes_from_the_prefix_cache(
    vllm_server: VllmServer, speech: dict[str, Any]
) -> None:
    """Turn 2 resends turn 1's clip: every whole KV block of the shared prefix is reused."""
    clip = {"role": "user", "content": [audio_part(speech["b64"]), {"type": "text", "text": "1"}]}
    first = _prompt_ids(vllm_server, [clip])
    hits = _metric(vllm_server, "vllm:prefix_cache_hits_total")
    # A reply never sent before: no block past the shared prefix can be in the cache.
    reply = {"role": "assistant", "content": f"ok {uuid.uuid4().hex}"}
    second = _prompt_ids(vllm_server, [clip, reply, {"role": "user", "content": "2"}])
    cached = _metric(vllm_server, "vllm:prefix_cache_hits_total") - hits
    shared = next(
        (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), len(first)
    )
    block = _block_size(vllm_server)  # 128 on the CPU backend
    assert shared > 375  # the clip's [AUDIO] run is inside the shared prefix
    assert cached == shared // block * block
