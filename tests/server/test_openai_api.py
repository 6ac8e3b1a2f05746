"""The OpenAI-compatible API of ``serve``, through the official openai SDK (and raw HTTP)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import numpy as np
import openai
import pytest
import soundfile as sf
import soxr
from openai import AsyncOpenAI

from tests.server.wire import http

pytestmark = pytest.mark.timeout(120)

TOKEN = "openai-api-token"

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _client(server, api_key: str = TOKEN) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=api_key, base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
    )


def _wav_b64(pcm: np.ndarray, rate_hz: int = 16000) -> str:
    out = io.BytesIO()
    sf.write(out, pcm, rate_hz, subtype="PCM_16", format="WAV")
    return base64.b64encode(out.getvalue()).decode()


def _audio_part(data: str, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


@pytest.fixture
async def api_server(start_server):
    """A token-protected server (its tools are not offered to OpenAI API clients)."""
    async with start_server(token=TOKEN) as running:
        yield running


async def test_models_lists_the_one_model_with_its_context(api_server) -> None:
    """GET /v1/models: the server's model, with vLLM's max_model_len extension."""
    page = await _client(api_server).models.list()
    assert [m.id for m in page.data] == ["voxtral"]
    assert page.data[0].model_extra["max_model_len"] > 0  # type: ignore[index]


async def test_a_text_completion_has_openai_shape_and_usage(api_server, script) -> None:
    """Non-streamed: one choice, the reply text, finish_reason stop, token usage."""
    script.say("Hello there.")
    completion = await _client(api_server).chat.completions.create(
        model="voxtral", messages=[{"role": "user", "content": "Hi"}]
    )
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert (choice.message.role, choice.message.content) == ("assistant", "Hello there.")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_a_streamed_completion_arrives_in_chunks_then_usage(api_server, script) -> None:
    """stream=True: a role chunk, text deltas, the finish reason, then a usage-only chunk."""
    script.say("One two three four.")
    stream = await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[{"role": "user", "content": "Count."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


async def test_a_tool_call_comes_back_as_tool_calls(api_server, script) -> None:
    """Client tools: the model's call is returned (id of 9, name, JSON arguments), not run."""
    script.say(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    completion = await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = completion.choices[0]
    calls = choice.message.tool_calls or []
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert len(calls[0].id) == 9


async def test_a_streamed_tool_call_arrives_whole_under_index_zero(api_server, script) -> None:
    """Streamed: one tool-call delta with id, name and complete arguments; tool_calls finish."""
    script.say("Let me check.", [{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    stream = await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.function.name) for d in deltas] == [(0, "get_weather")]  # type: ignore[union-attr]
    assert json.loads(deltas[0].function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Let me check."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_tool_result_round_trip_reaches_the_prompt(api_server, script) -> None:
    """A history with an OpenAI-style call id, its result, then the model's answer."""
    script.say("It is 21 degrees.")
    completion = await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_Xy12345678901234567890",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_Xy12345678901234567890",
                "content": '{"temperature_c": 21}',
            },
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert completion.choices[0].message.content == "It is 21 degrees."
    assert '{"temperature_c": 21}' in script.prompts[-1]


async def test_audio_parts_reach_the_model_at_any_rate(api_server, script, speech_16k) -> None:
    """input_audio (a 24 kHz WAV) becomes one 16 kHz clip in the prompt."""
    script.say("You asked about the weather.")
    pcm_24k = np.asarray(soxr.resample(speech_16k, 16000, 24000), dtype=np.int16)
    completion = await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[
            {
                "role": "user",
                "content": [_audio_part(_wav_b64(pcm_24k, 24000)), {"type": "text", "text": "?"}],
            }
        ],
    )
    assert completion.choices[0].message.content == "You asked about the weather."
    assert script.prompts[-1].count("[BEGIN_AUDIO]") == 1


async def test_tool_choice_none_leaves_the_tools_out(api_server, script) -> None:
    """tool_choice none: the prompt holds no tools."""
    script.say("No tools.")
    await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[{"role": "user", "content": "Hi"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert "get_weather" not in script.prompts[-1]


async def test_parallel_tool_calls_false_keeps_the_first_call(api_server, script) -> None:
    """parallel_tool_calls false: of two calls only the first is returned."""
    script.say(
        tool_calls=[
            {"name": "get_weather", "arguments": {"city": "Rome"}},
            {"name": "get_weather", "arguments": {"city": "Oslo"}},
        ]
    )
    completion = await _client(api_server).chat.completions.create(
        model="voxtral",
        messages=[{"role": "user", "content": "Rome and Oslo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        parallel_tool_calls=False,
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Rome"]  # type: ignore[union-attr]


async def test_max_tokens_cuts_the_reply_with_finish_length(api_server, script) -> None:
    """max_tokens: the reply stops there and says length."""
    script.say("A rather long answer that goes on and on.")
    completion = await _client(api_server).chat.completions.create(
        model="voxtral", messages=[{"role": "user", "content": "Talk."}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"n": 2}, "n"),
        ({"stop": ["x"]}, "stop"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_it(
    api_server, options: dict[str, Any], field: str
) -> None:
    """Unsupported options are refused with BadRequestError naming the field."""
    with pytest.raises(openai.BadRequestError) as caught:
        await _client(api_server).chat.completions.create(
            model="voxtral",
            messages=[{"role": "user", "content": "Hi"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            **options,
        )
    assert f"400 - {field}" in caught.value.message


async def test_audio_that_is_not_audio_is_a_400(api_server) -> None:
    """input_audio bytes that decode to no audio: 400 naming the part."""
    with pytest.raises(openai.BadRequestError) as caught:
        await _client(api_server).chat.completions.create(
            model="voxtral",
            messages=[
                {"role": "user", "content": [_audio_part(base64.b64encode(b"no audio").decode())]}
            ],
        )
    assert "messages.0.content.0.input_audio" in caught.value.message


async def test_a_prompt_mistral_common_refuses_is_a_400(api_server) -> None:
    """Two assistant messages in a row cannot form a prompt: a 400, as vLLM would say."""
    with pytest.raises(openai.BadRequestError) as caught:
        await _client(api_server).chat.completions.create(
            model="voxtral",
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "tool", "tool_call_id": "abcdefghi", "content": "{}"},
            ],
        )
    assert "cannot build the prompt" in caught.value.message


async def test_a_wrong_token_is_refused(api_server) -> None:
    """The server's token guards the OpenAI API like the rest of the server."""
    with pytest.raises(openai.AuthenticationError):
        await _client(api_server, api_key="wrong").models.list()


async def test_a_foreign_origin_is_refused(api_server) -> None:
    """A browser page from another Origin cannot use the API."""
    response = await http(
        "POST",
        f"http://127.0.0.1:{api_server.port}/v1/chat/completions",
        json_body={"model": "voxtral", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"},
    )
    assert response.status_code == 403


async def test_a_body_over_the_limit_is_refused_before_it_is_read(start_server) -> None:
    """The server's body limit applies: 413 from the head alone."""
    async with start_server(limits={"max_request_body_bytes": 1000}) as server:
        response = await http(
            "POST",
            f"http://127.0.0.1:{server.port}/v1/chat/completions",
            content=b"{" + b" " * 2000 + b"}",
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413


async def test_invalid_json_is_a_400_and_the_server_keeps_serving(api_server, script) -> None:
    """A broken body gets a 400; the next request is answered."""
    response = await http(
        "POST",
        f"http://127.0.0.1:{api_server.port}/v1/chat/completions",
        content=b'{"messages": [',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    script.say("Still here.")
    completion = await _client(api_server).chat.completions.create(
        model="voxtral", messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.choices[0].message.content == "Still here."


async def test_transcriptions_return_the_text(api_server, script, speech_16k) -> None:
    """POST /v1/audio/transcriptions (multipart): the transcript and the language asked for."""
    script.hear("What is the weather in Paris today?")
    out = io.BytesIO()
    sf.write(out, speech_16k, 16000, subtype="PCM_16", format="WAV")
    result = await _client(api_server).audio.transcriptions.create(
        model="voxtral", file=("speech.wav", out.getvalue(), "audio/wav"), language="en"
    )
    assert result.text == "What is the weather in Paris today?"
    assert result.model_extra["language"] == "en"  # type: ignore[index]


async def test_shutdown_ends_a_running_stream_with_an_error_event(start_server, script) -> None:
    """Past the shutdown grace a streamed completion ends with an error the SDK raises."""
    script.say("word " * 1500)
    async with start_server(limits={"shutdown_grace_s": 0.2}) as server:
        stream = await _client(server, api_key="unused").chat.completions.create(
            model="voxtral",
            messages=[{"role": "user", "content": "Talk."}],
            stream=True,
            max_tokens=3000,
        )
        await anext(aiter(stream))
        stopping = asyncio.create_task(server.shutdown())
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
        await stopping
    assert "shutting down" in caught.value.message
