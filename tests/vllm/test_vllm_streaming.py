"""Through the official openai SDK: streamed tool calls, transcription, cancellation."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.model_worker import ModelWorker
from assistant.testing.forced import reply_tokens
from assistant.testing.vllm_server import VllmServer
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


def test_closing_the_stream_stops_the_generation(
    client: openai.OpenAI, vllm_server: VllmServer
) -> None:
    """A client that closes its stream ends the request on the server within moments."""
    generated = _settled_metric(vllm_server, "vllm:generation_tokens_total")
    stream = client.chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Talk."}],
        stream=True,
        max_tokens=3000,  # ~15 s of decoding on one core
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    for count, _ in enumerate(stream):
        if count == 4:
            break
    stream.close()
    deadline = time.monotonic() + 2.0
    while _metric(vllm_server, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the request still runs after its client left"
        time.sleep(0.05)
    time.sleep(1.0)
    assert _metric(vllm_server, "vllm:generation_tokens_total") - generated < 300
