"""One voxtral-assistant as the model backend of another: RemoteWorker on our own OpenAI API.

The inner server runs the tiny model with scripted replies; the outer side is a
``RemoteWorker`` (``--backend vllm --model-url http://127.0.0.1:PORT/v1``) and a ``Dialogue``
with server tools on top of it. Our API sends no token ids, so this is the RemoteWorker's
text-and-tool-call-delta path (vLLM's token-id path is tested in ``tests/vllm``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mistral_common.protocol.instruct.messages import UserMessage

from assistant.config import GenerationParams, ModelSettings, ServerSettings
from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import (
    ErrorEvent,
    MalformedToolCall,
    ResponseDone,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnDone,
)
from assistant.model.backend import BackendUnavailableError
from assistant.model.remote import RemoteWorker
from assistant.server.assistant_server import AssistantServer
from assistant.testing.forced import ScriptedReplies
from assistant.tools import ToolRegistry
from tests.server.conftest import get_weather
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(180)


def _settings(model_dir: Any, port: int, path: str = "/v1") -> ModelSettings:
    return ModelSettings(id=str(model_dir), backend="vllm", url=f"http://127.0.0.1:{port}{path}")


@pytest.fixture
async def remote(server, tiny_model_dir) -> AsyncIterator[RemoteWorker]:
    """A RemoteWorker on the inner server's OpenAI API."""
    worker = await asyncio.to_thread(RemoteWorker.connect, _settings(tiny_model_dir, server.port))
    yield worker
    worker.close()


def _model_events(events: list[Any]) -> list[Any]:
    kept = [e for e in events if isinstance(e, (TextDelta, ToolCall, MalformedToolCall))]
    return [dataclasses.replace(e, id="") if isinstance(e, ToolCall) else e for e in kept]


async def test_connect_reads_the_model_and_its_context(remote, scripted_worker) -> None:
    """GET /v1/models names the model and its context length."""
    local, _ = scripted_worker
    assert remote.served.name == "voxtral"
    assert remote.context_tokens == local.context_tokens


async def test_a_reply_streams_the_local_events(remote, scripted_worker, script) -> None:
    """Text and a tool call through two servers: the events the local worker gives."""
    local, _ = scripted_worker
    reply = ("Let me look.", [{"name": "get_weather", "arguments": {"city": "Rome"}}])
    messages = [UserMessage(content="Weather in Rome?")]
    tools = ToolRegistry.from_functions([get_weather]).mistral_tools()
    script.say(*reply)
    remote_events = [e async for e in remote.respond(messages, tools=tools)]
    script.say(*reply)
    local_events = [e async for e in local.respond(messages, tools=tools)]
    assert _model_events(remote_events) == _model_events(local_events)
    done = remote_events[-1]
    assert isinstance(done, ResponseDone) and done.finish_reason == "tool_calls"
    assert done.usage.prompt_tokens == remote.count_tokens(messages, tools)
    assert done.tool_calls[0].id == next(e.id for e in remote_events if isinstance(e, ToolCall))


async def test_transcription_goes_through_the_api(remote, script, speech_16k) -> None:
    """RemoteWorker.transcribe uses POST /v1/audio/transcriptions."""
    script.hear("What is the weather in Paris today?")
    result = await remote.transcribe(speech_16k, "en")
    assert (result.text, result.language) == ("What is the weather in Paris today?", "en")


async def test_a_dialogue_runs_server_tools_over_the_chain(remote, script, speech_16k) -> None:
    """A spoken turn: the remote model calls the outer server's tool, then answers."""
    script.say(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say("It is 21 degrees in Paris.")
    script.hear("What is the weather in Paris today?")
    dialogue = Dialogue(remote, ToolRegistry.from_functions([get_weather]))
    dialogue.add_user_turn(audio=speech_16k)
    events = [e async for e in dialogue.respond()]
    await dialogue.aclose()
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.name for r in results] == ["get_weather"] and results[0].ok
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert (done.text, done.finish_reason) == ("It is 21 degrees in Paris.", "stop")
    assert '"temperature_c": 21' in script.prompts[-1]


async def test_the_session_header_lets_the_inner_worker_reuse_its_cache(
    remote, scripted_worker, script
) -> None:
    """X-Session-Id becomes the inner conversation id: turn 2 prefills only what is new."""
    local, _ = scripted_worker
    dialogue = Dialogue(remote, settings=DialogueSettings(transcribe_user=False))
    for turn in ("First question?", "Second question?"):
        script.say("An answer.")
        reused = local.engine.stats.reused_tokens
        dialogue.add_user_turn(text=turn)
        [e async for e in dialogue.respond()]
    await dialogue.aclose()
    assert local.engine.stats.reused_tokens > reused


class _CountingScript(ScriptedReplies):
    """Scripted replies that count the decode steps the inner model takes."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.decode_steps = 0

    def logits_processors(self, batch_size: int = 1) -> list[Any]:
        inner = super().logits_processors(batch_size)

        def counted(input_ids: Any, scores: Any) -> Any:
            self.decode_steps += 1
            for processor in inner:
                scores = processor(input_ids, scores)
            return scores

        return [counted]


async def test_cancelling_stops_the_inner_generation(remote, scripted_worker) -> None:
    """Cancel after the first delta: the stream ends cancelled, the inner model stops early."""
    local, holder = scripted_worker
    script = holder["script"] = _CountingScript(local.tokenizer)
    script.say("word " * 1500)
    stream = remote.respond(
        [UserMessage(content="Talk.")], params=GenerationParams(max_new_tokens=3000)
    )
    async for event in stream:
        if isinstance(event, TextDelta):
            stream.cancel()
        if isinstance(event, ResponseDone):
            assert event.finish_reason == "cancelled"
    steps = script.decode_steps
    await asyncio.sleep(1.0)  # the inner server hears of the hang-up and stops
    assert script.decode_steps - steps < 100
    assert script.decode_steps < 1500


async def test_an_outage_fails_the_turn_and_the_next_one_works(
    scripted_worker, script, tiny_model_dir
) -> None:
    """Inner server gone: a model_unavailable error naming it; back on its port: a reply."""
    local, _ = scripted_worker
    port = free_port()
    settings = ServerSettings(port=port, close_timeout_s=1.0, shutdown_grace_s=1.0)
    inner = AssistantServer(local, settings=settings)
    await inner.start()
    remote = await asyncio.to_thread(RemoteWorker.connect, _settings(tiny_model_dir, port))
    dialogue = Dialogue(remote, settings=DialogueSettings(transcribe_user=False))
    try:
        script.say("Before.")
        dialogue.add_user_turn(text="One")
        assert [e async for e in dialogue.respond()][-1].text == "Before."
        await inner.shutdown()
        dialogue.add_user_turn(text="Two")
        events = [e async for e in dialogue.respond()]
        errors = [e for e in events if isinstance(e, ErrorEvent)]
        assert [e.code for e in errors] == ["model_unavailable"]
        assert f"the model server at http://127.0.0.1:{port}/v1 is unreachable" in errors[0].message
        assert events[-1].finish_reason == "error"
        inner = AssistantServer(local, settings=settings)
        await inner.start()
        script.say("After.")
        dialogue.add_user_turn(text="Three")
        assert [e async for e in dialogue.respond()][-1].text == "After."
    finally:
        await dialogue.aclose()
        remote.close()
        await inner.shutdown()


async def test_an_unreachable_server_fails_at_connect(tiny_model_dir) -> None:
    """Nothing listening: one sentence naming the URL and the flag."""
    port = free_port()
    with pytest.raises(BackendUnavailableError) as caught:
        await asyncio.to_thread(RemoteWorker.connect, _settings(tiny_model_dir, port))
    message = str(caught.value)
    assert message.startswith(f"cannot reach the model server at http://127.0.0.1:{port}/v1")
    assert "--model-url" in message and "\n" not in message


async def test_a_url_that_is_not_the_api_root_fails_at_connect(server, tiny_model_dir) -> None:
    """The server's root instead of /v1: it says the URL must be the API root."""
    with pytest.raises(BackendUnavailableError) as caught:
        await asyncio.to_thread(RemoteWorker.connect, _settings(tiny_model_dir, server.port, ""))
    assert "must be its API root" in str(caught.value)


async def test_the_api_key_comes_from_the_named_variable(
    start_server, script, tiny_model_dir, monkeypatch
) -> None:
    """api_key_env names the variable whose value is sent as the Bearer token."""
    monkeypatch.setenv("INNER_KEY", "s3cret-inner-key")
    async with start_server(token="s3cret-inner-key") as inner:
        settings = _settings(tiny_model_dir, inner.port).model_copy(
            update={"api_key_env": "INNER_KEY"}
        )
        worker = await asyncio.to_thread(RemoteWorker.connect, settings)
        script.say("Authorized.")
        done = await worker.respond([UserMessage(content="Hi")]).done()
        worker.close()
        assert done.text == "Authorized."
        assert "s3cret" not in repr(worker.options)
        monkeypatch.setenv("INNER_KEY", "wrong")
        with pytest.raises(BackendUnavailableError, match="refused the API key"):
            await asyncio.to_thread(RemoteWorker.connect, settings)


def test_the_api_key_is_redacted_from_logs(monkeypatch, tmp_path) -> None:
    """The CLI's log filter learns the model server's key from the named variable."""
    from assistant.cli import build_parser
    from assistant.cli.common import LOG_REDACTION, settings_from_args

    monkeypatch.setenv("VOXTRAL_ASSISTANT_MODEL__API_KEY_ENV", "VLLM_KEY")
    monkeypatch.setenv("VLLM_KEY", "key-0123456789")
    args = build_parser().parse_args(
        ["serve", "--backend", "vllm", "--model-url", "http://127.0.0.1:9/v1"]
    )
    settings_from_args(args)
    assert LOG_REDACTION.redact("sent key-0123456789") == "sent [redacted]"


async def test_a_speculation_over_a_remote_model_is_adopted(remote, script, speech_16k) -> None:
    """Preemptive turns work on the remote backend: the committed clip adopts the reply that
    was asked for at the first silent frame (one request to the model server)."""
    script.say("Sunny in Paris.")
    dialogue = Dialogue(remote, settings=DialogueSettings(transcribe_user=False))
    assert dialogue.speculate(speech_16k)
    dialogue.add_user_turn(audio=speech_16k.copy())
    events = [event async for event in dialogue.respond()]
    done = events[-1]
    assert isinstance(done, TurnDone) and done.text == "Sunny in Paris."
    assert done.metrics.preempted
    assert script.served == ["chat"]
    await dialogue.aclose()


async def test_a_discarded_remote_speculation_shows_nothing(remote, script, speech_16k) -> None:
    """A speculation discarded on the remote backend leaves the history empty and the next
    turn is answered normally."""
    script.say("Ignored.")
    script.say("Sunny in Paris.")
    dialogue = Dialogue(remote, settings=DialogueSettings(transcribe_user=False))
    assert dialogue.speculate(speech_16k)
    assert dialogue.discard_speculation()
    assert dialogue.history == []
    dialogue.add_user_turn(text="Weather in Paris?")
    events = [event async for event in dialogue.respond()]
    done = events[-1]
    assert isinstance(done, TurnDone) and not done.metrics.preempted
    assert done.text in {"Ignored.", "Sunny in Paris."}  # the inner server may have served it
    assert [m.role for m in dialogue.history] == ["user", "assistant"]
    await dialogue.aclose()
