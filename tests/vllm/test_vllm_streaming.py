"""Through the official openai SDK: streamed tool calls, transcription, cancellation."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import httpx
import openai
import pytest
from mistral_common.protocol.instruct.messages import UserMessage
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.config import GenerationParams
from assistant.events import MalformedToolCall, TextDelta, ToolCall
from assistant.model.toolcall_parser import ToolCallParser
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies, reply_tokens
from assistant.testing.tiny_model import EOS_ID
from tests.support.vllm_server import SLOW_LONG_REPLY, VllmServer
from tests.vllm.conftest import LIGHT_TOOL, audio_part

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(vllm_server: VllmServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def tokenizer(vllm_model_dir: Any) -> MistralTokenizer:
    return MistralTokenizer.from_file(str(vllm_model_dir / "tekken.json"))


def test_a_tool_call_streams_with_id_name_and_arguments(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer, speech: dict
) -> None:
    """Text, then one call: a 9-character id and the name first, then argument deltas."""
    arguments = {"room": "kitchen", "on": True}
    forced = reply_tokens(tokenizer, "Sure.", [{"name": "set_light", "arguments": arguments}])
    stream = client.chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": [audio_part(speech["b64"])]}],  # type: ignore[list-item]
        tools=[LIGHT_TOOL],  # type: ignore[list-item]
        stream=True,
        temperature=0,
        extra_body={"vllm_xargs": {"forced_tokens": forced}},
    )
    text, calls, finish = "", {}, None
    for chunk in stream:
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            if delta.id:
                assert call["id"] is None  # the id comes once, with the name
                call["id"], call["name"] = delta.id, delta.function.name
            call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    assert text == "Sure."
    assert list(calls) == [0]
    assert len(calls[0]["id"]) == 9 and calls[0]["id"].isalnum()
    assert calls[0]["name"] == "set_light"
    assert json.loads(calls[0]["arguments"]) == arguments
    assert finish == "tool_calls"


def test_text_deltas_keep_characters_whole(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer
) -> None:
    """Multi-byte characters spread over byte tokens arrive whole, in order."""
    text = "Héllo wörld ✓ 日本 — ok"
    stream = client.chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Say it."}],
        stream=True,
        extra_body={"vllm_xargs": {"forced_tokens": reply_tokens(tokenizer, text)}},
    )
    deltas = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert "".join(deltas) == text
    assert "\ufffd" not in "".join(deltas)


def test_two_calls_in_one_reply_stream_as_two(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer
) -> None:
    """Several calls of one reply arrive under indexes 0 and 1."""
    forced = reply_tokens(
        tokenizer,
        None,
        [
            {"name": "set_light", "arguments": {"room": "kitchen"}},
            {"name": "set_light", "arguments": {"room": "hall"}},
        ],
    )
    response = client.chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Lights."}],
        tools=[LIGHT_TOOL],  # type: ignore[list-item]
        extra_body={"vllm_xargs": {"forced_tokens": forced}},
    )
    calls = response.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments)["room"] for c in calls] == ["kitchen", "hall"]  # type: ignore[union-attr]
    assert response.choices[0].finish_reason == "tool_calls"


def _stream_reply(
    client: openai.OpenAI, server: VllmServer, forced: list[int], **options: Any
) -> tuple[str, dict[int, dict[str, str]], list[int], str | None]:
    """Text, merged tool calls, generated token ids and finish reason of a forced reply."""
    stream = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": "Lights."}],
        tools=[LIGHT_TOOL],  # type: ignore[list-item]
        stream=True,
        extra_body={"vllm_xargs": {"forced_tokens": forced}, "return_token_ids": True},
        **options,
    )
    text, calls, tokens, finish = "", {}, [], None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        tokens += getattr(choice, "token_ids", None) or []
        text += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
        finish = choice.finish_reason or finish
    return text, calls, tokens, finish


def test_a_call_with_bad_json_streams_as_a_broken_call(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer
) -> None:
    """vLLM's streaming parser hands out the name and the arguments up to the break."""
    bad = tokenizer.instruct_tokenizer.tokenizer.encode(
        '[{"name": "set_light", "arguments": {"room": kitch', False, False
    )
    text, calls, tokens, finish = _stream_reply(client, vllm_server, [9, *bad, 2])
    assert text == ""
    assert calls[0]["name"] == "set_light"
    assert calls[0]["arguments"] == '{"room": '  # not JSON: the client must check it
    assert finish == "tool_calls"
    assert tokens[0] == 9  # [TOOL_CALLS] is visible in the token ids


def test_a_call_cut_by_max_tokens_streams_nothing(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer
) -> None:
    """A call cut off by max_tokens leaves no text and no call: only the token ids show it."""
    call = reply_tokens(tokenizer, None, [{"name": "set_light", "arguments": {"room": "hall"}}])
    text, calls, tokens, finish = _stream_reply(client, vllm_server, call, max_tokens=12)
    assert (text, calls, finish) == ("", {}, "length")
    assert tokens == call[:12]


def test_an_unknown_tool_name_is_passed_on(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer
) -> None:
    """vLLM does not check a call's name against the request's tools."""
    call = reply_tokens(tokenizer, None, [{"name": "open_pod_bay", "arguments": {"x": 1}}])
    _, calls, _, finish = _stream_reply(client, vllm_server, call)
    assert calls[0]["name"] == "open_pod_bay"
    assert finish == "tool_calls"


def _without_ids(events: list[Any]) -> list[Any]:
    """Events with tool-call ids blanked (each side assigns its own random ones)."""
    return [dataclasses.replace(e, id="") if isinstance(e, ToolCall) else e for e in events]


@pytest.mark.parametrize(
    "reply",
    [
        {"text": "Ok ✓.", "calls": [{"name": "set_light", "arguments": {"room": "hall"}}]},
        {"text": None, "calls": [{"name": "set_light", "arguments": {"room": "a"}}] * 2},
        {"text": "Hé.", "calls": [], "max_tokens": 2},
        {
            "text": None,
            "calls": [{"name": "set_light", "arguments": {"room": "x"}}],
            "max_tokens": 9,
        },
    ],
    ids=["text and call", "two calls", "cut text", "cut call"],
)
async def test_the_parser_over_streamed_token_ids_gives_the_local_events(
    client: openai.OpenAI,
    vllm_server: VllmServer,
    vllm_model_dir: Any,
    tokenizer: MistralTokenizer,
    reply: dict[str, Any],
) -> None:
    """The project's ToolCallParser fed vLLM's token ids (</s> left out) = the local worker."""
    forced = reply_tokens(tokenizer, reply["text"], reply["calls"])
    limit = reply.get("max_tokens", 200)
    _, _, tokens, finish = _stream_reply(client, vllm_server, forced, max_tokens=limit)
    parser = ToolCallParser.for_tokenizer(tokenizer)
    remote = [event for token in tokens if token != EOS_ID for event in parser.feed(token)]
    remote += parser.finish(truncated=finish == "length")

    script = ScriptedReplies()
    script.add(forced)
    worker = ModelWorker.load(
        vllm_model_dir, device="cpu", logits_processor_factory=script.logits_processors
    )
    try:
        stream = worker.respond(
            [UserMessage(content="Lights.")], params=GenerationParams(max_new_tokens=limit)
        )
        local = [e async for e in stream if isinstance(e, (TextDelta, ToolCall, MalformedToolCall))]
    finally:
        worker.close()
    assert _without_ids(remote) == _without_ids(local)


@pytest.mark.parametrize("language", ["en", None])
async def test_transcription_equals_the_local_one(
    client: openai.OpenAI,
    vllm_server: VllmServer,
    same_weights_worker: ModelWorker,
    speech: dict,
    language: str | None,
) -> None:
    """/v1/audio/transcriptions: the local worker's greedy text (language given or detected)."""
    local = await same_weights_worker.transcribe(speech["pcm"], language, max_new_tokens=48)
    extra: dict[str, Any] = {"language": language} if language else {}
    remote = client.audio.transcriptions.create(
        model=vllm_server.model,
        file=("command.wav", speech["wav"], "audio/wav"),
        temperature=0,
        extra_body={"max_completion_tokens": 48},
        **extra,
    )
    # A random model writes byte soup: vLLM holds back an unfinished UTF-8 sequence at the
    # end where the local decoder writes U+FFFD, so compare without replacement characters.
    assert remote.text.replace("\ufffd", "").strip() == local.text.replace("\ufffd", "").strip()


def test_a_detected_language_stays_in_the_text(
    client: openai.OpenAI, vllm_server: VllmServer, tokenizer: MistralTokenizer, speech: dict
) -> None:
    """Without a language vLLM returns the model's ``lang:xx`` announcement as text."""
    forced = tokenizer.instruct_tokenizer.tokenizer.encode("lang:fr Allume la lumière", False, True)
    remote = client.audio.transcriptions.create(
        model=vllm_server.model,
        file=("command.wav", speech["wav"], "audio/wav"),
        temperature=0,
        # A multipart form: vLLM parses vllm_xargs from a JSON string there.
        extra_body={"vllm_xargs": json.dumps({"forced_tokens": forced})},
    )
    assert remote.text == "lang:fr Allume la lumière"


def test_a_language_code_outside_whisper_is_refused(
    client: openai.OpenAI, vllm_server: VllmServer, speech: dict
) -> None:
    """Voxtral's nine languages pass, other Whisper codes only warn, anything else is refused."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model=vllm_server.model,
            file=("command.wav", speech["wav"], "audio/wav"),
            language="xx",
        )
    assert caught.value.status_code == 400
    assert "Unsupported language: 'xx'.  Must be one of ['ar', 'nl', 'en', 'fr', 'de'," in str(
        caught.value
    )


def _metric(server: VllmServer, name: str) -> float:
    for line in httpx.get(f"{server.root_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def _settled_metric(server: VllmServer, name: str) -> float:
    """A counter once it stopped moving (earlier requests' figures are all in)."""
    value = _metric(server, name)
    for _ in range(20):
        time.sleep(0.25)
        previous, value = value, _metric(server, name)
        if value == previous:
            break
    return value


def _wait_for(server: VllmServer, name: str, check: Any, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while not check(value := _metric(server, name)):
        assert time.monotonic() < deadline, f"{name} stayed at {value}"
        time.sleep(0.05)
    return time.monotonic()


def test_closing_the_stream_stops_the_generation(
    client: openai.OpenAI, vllm_server: VllmServer
) -> None:
    """A client that closes its stream ends the request long before its max_tokens.

    vLLM aborts when its HTTP server notices the disconnect: measured 0.03-0.2 s later on 2
    cores, idle or busy. Each step waits 10 ms (the test kit's processor): unslowed, the tiny
    model once decoded all 4,000 tokens before a busy client had read its fourth chunk.
    """
    # Earlier tests' requests (a cancelled one may still be winding down) must not count here.
    _wait_for(vllm_server, "vllm:num_requests_running", lambda v: v == 0, 60.0)
    generated = _settled_metric(vllm_server, "vllm:generation_tokens_total")
    stream = client.chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Talk."}],
        stream=True,
        max_tokens=4000,  # 40 s at 10 ms a step: it can only end sooner by the abort
        temperature=0,
        extra_body=SLOW_LONG_REPLY,
    )
    for count, _ in enumerate(stream):
        if count == 4:
            break
    closed = time.monotonic()
    stream.close()  # (leaving the loop may already have closed it: the SDK's generator ends)
    stopped = _wait_for(vllm_server, "vllm:num_requests_running", lambda v: v == 0, 10.0)
    spent = _settled_metric(vllm_server, "vllm:generation_tokens_total") - generated
    print(f"stopped {stopped - closed:.2f} s after the close, {spent:.0f} tokens in all")
    assert spent < 2000
