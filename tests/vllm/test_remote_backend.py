"""The RemoteWorker (model.backend: vllm) against a real vLLM serving the tiny Voxtral."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mistral_common.protocol.instruct.messages import SystemMessage, TextChunk, UserMessage
from mistral_common.protocol.instruct.tool_calls import Function, Tool

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.events import ErrorEvent, MalformedToolCall, ResponseDone, TextDelta, ToolCall
from assistant.model.remote import RemoteWorker
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies, reply_tokens
from tests.support.vllm_server import SLOW_STEPS, VllmServer
from tests.vllm.conftest import LIGHT_TOOL, RemoteScript, audio_part, remote_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOOLS = [Tool(function=Function(**LIGHT_TOOL["function"]))]


def _model_events(events: list[Any]) -> list[Any]:
    kept = [e for e in events if isinstance(e, (TextDelta, ToolCall, MalformedToolCall))]
    return [dataclasses.replace(e, id="") if isinstance(e, ToolCall) else e for e in kept]


def test_connect_names_the_served_model_and_its_context(remote: RemoteWorker) -> None:
    """/v1/models gives the served name and max_model_len; the clip limit is vLLM's 5."""
    assert (remote.served.name, remote.context_tokens, remote.max_clips) == (
        "tiny-voxtral",
        4096,
        5,
    )


async def test_a_greedy_reply_equals_the_local_worker(
    remote: RemoteWorker, vllm_model_dir: Path, speech: dict[str, Any]
) -> None:
    """Same weights, instructions + audio + tools: same prompt length, same greedy text."""
    messages = [
        SystemMessage(content="Be brief."),
        UserMessage(content=[audio_chunk(speech["pcm"], 16000), TextChunk(text="Hi.")]),
    ]
    params = GenerationParams(max_new_tokens=12, temperature=0.0)
    local_worker = ModelWorker.load(vllm_model_dir, device="cpu", dtype="float32")
    try:
        local = await local_worker.respond(messages, tools=TOOLS, params=params).done()
    finally:
        local_worker.close()
    done = await remote.respond(messages, tools=TOOLS, params=params).done()
    assert (
        done.usage.prompt_tokens
        == local.usage.prompt_tokens
        == remote.count_tokens(messages, TOOLS)
    )
    assert (done.text, done.finish_reason) == (local.text, local.finish_reason)
    assert done.usage.audio_tokens == local.usage.audio_tokens > 0


async def test_a_forced_tool_call_streams_the_local_events(
    remote: RemoteWorker, remote_script: RemoteScript, vllm_model_dir: Path
) -> None:
    """Text then a call, through vLLM's token ids: the local worker's events, finish tool_calls."""
    reply = ("Sure ✓.", [{"name": "set_light", "arguments": {"room": "kitchen", "on": True}}])
    messages = [UserMessage(content="Kitchen lights on.")]
    remote_script.say(*reply)
    remote_events = [e async for e in remote.respond(messages, tools=TOOLS)]
    script = ScriptedReplies()
    local_worker = ModelWorker.load(
        vllm_model_dir, device="cpu", logits_processor_factory=script.logits_processors
    )
    try:
        script.add(reply_tokens(remote_script.tokenizer, *reply))
        local_events = [e async for e in local_worker.respond(messages, tools=TOOLS)]
    finally:
        local_worker.close()
    assert _model_events(remote_events) == _model_events(local_events)
    done = remote_events[-1]
    assert isinstance(done, ResponseDone) and done.finish_reason == "tool_calls"
    assert len(done.tool_calls[0].id) == 9


def _metric(server: VllmServer, name: str) -> float:
    for line in httpx.get(f"{server.root_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


async def test_cancelling_stops_the_generation_on_the_server(
    remote: RemoteWorker, remote_script: RemoteScript, vllm_server: VllmServer
) -> None:
    """cancel() after the first delta: the stream ends cancelled and vLLM stops running it."""
    remote_script.extra["ignore_eos"] = True
    remote_script.extra["vllm_xargs"] = SLOW_STEPS  # else all 4,000 tokens may come at once
    before = _metric(vllm_server, "vllm:generation_tokens_total")
    stream = remote.respond(
        [UserMessage(content="Talk.")], params=GenerationParams(max_new_tokens=4000)
    )
    async for event in stream:
        if isinstance(event, TextDelta):
            stream.cancel()
        done = event
    assert isinstance(done, ResponseDone) and done.finish_reason == "cancelled"
    deadline = time.monotonic() + 20
    while _metric(vllm_server, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "vLLM kept generating"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the counters settle
    assert _metric(vllm_server, "vllm:generation_tokens_total") - before < 2000


@pytest.mark.parametrize("language", ["en", None])
async def test_transcription_equals_the_local_worker(
    remote: RemoteWorker,
    same_weights_worker: ModelWorker,
    speech: dict[str, Any],
    language: str | None,
) -> None:
    """/v1/audio/transcriptions through the RemoteWorker: the local greedy text."""
    local = await same_weights_worker.transcribe(speech["pcm"], language, max_new_tokens=24)
    result = await remote.transcribe(speech["pcm"], language, max_new_tokens=24)
    # vLLM holds back an unfinished UTF-8 tail where the local decoder writes U+FFFD.
    assert result.text.replace("\ufffd", "") == local.text.replace("\ufffd", "").strip()
    if language:
        assert result.language == language


async def test_a_detected_language_is_split_off(
    remote: RemoteWorker, remote_script: RemoteScript, speech: dict[str, Any]
) -> None:
    """vLLM returns the model's lang:xx in the text; the RemoteWorker reads it as the language."""
    remote_script.hear("lang:fr Allume la lumière")
    result = await remote.transcribe(speech["pcm"])
    assert (result.text, result.language) == ("Allume la lumière", "fr")


async def test_six_clips_are_refused_before_sending(
    remote: RemoteWorker, speech: dict[str, Any]
) -> None:
    """More clips than vLLM takes: a bad_request that says so, without a request."""
    clip = audio_chunk(speech["pcm"], 16000)
    events = [e async for e in remote.respond([UserMessage(content=[clip] * 6)])]
    assert events[0] == ErrorEvent(
        "bad_request",
        "the request holds 6 audio clips; the model server takes at most 5 per request (the "
        "whole history counts)",
    )
    assert isinstance(events[-1], ResponseDone) and events[-1].finish_reason == "error"


async def test_a_refusal_by_vllm_keeps_its_message(
    vllm_server: VllmServer, vllm_model_dir: Path, speech: dict[str, Any]
) -> None:
    """Without the local check, vLLM's own 400 reaches the caller as bad_request, verbatim."""
    settings = remote_settings(vllm_model_dir, vllm_server.base_url, max_clips=6)
    worker = await asyncio.to_thread(RemoteWorker.connect, settings)
    clip = audio_chunk(speech["pcm"], 16000)
    try:
        events = [e async for e in worker.respond([UserMessage(content=[clip] * 6)])]
    finally:
        worker.close()
    assert events[0] == ErrorEvent(
        "bad_request", "At most 5 audio(s) may be provided in one prompt. (parameter=audio)"
    )


def test_the_local_token_count_is_vllms(remote: RemoteWorker, speech: dict[str, Any]) -> None:
    """count_tokens (the local tokenizer) is vLLM's prompt length, so the budget is exact."""
    messages = [UserMessage(content=[audio_chunk(speech["pcm"], 16000), TextChunk(text="Hi")])]
    wire = [
        {"role": "user", "content": [audio_part(speech["b64"]), {"type": "text", "text": "Hi"}]}
    ]
    response = httpx.post(
        f"{remote.options.url}/chat/completions",
        json={"model": remote.served.name, "messages": wire, "max_tokens": 1},
        timeout=120,
    )
    assert response.json()["usage"]["prompt_tokens"] == remote.count_tokens(messages)
