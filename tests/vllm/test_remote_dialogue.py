"""Conversations on vLLM: the dialogue's tool loop, history past 5 clips, an outage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mistral_common.protocol.instruct.messages import AudioChunk, TextChunk

from assistant.config import GenerationParams
from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import ErrorEvent, TextDelta, ToolResult, TurnDone
from assistant.model.remote import RemoteWorker
from assistant.tools import ToolRegistry, tool
from tests.support.tcp_proxy import TcpProxy
from tests.support.vllm_server import SLOW_STEPS, VllmServer
from tests.vllm.conftest import RemoteScript, remote_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@tool
def set_light(room: str, on: bool = True) -> dict[str, Any]:
    """Turn a light on or off.

    Args:
        room: The room.
        on: True for on.
    """
    return {"room": room, "on": on}


async def _turn(dialogue: Dialogue) -> list[Any]:
    return [event async for event in dialogue.respond()]


async def test_a_spoken_turn_runs_a_server_tool_on_vllm(
    remote: RemoteWorker, remote_script: RemoteScript, speech: dict[str, Any]
) -> None:
    """Speech in, a tool call from vLLM, the tool's result back to vLLM, the answer out."""
    remote_script.say(tool_calls=[{"name": "set_light", "arguments": {"room": "kitchen"}}])
    remote_script.say("The kitchen light is on.")
    remote_script.hear("Turn on the kitchen lights please")
    dialogue = Dialogue(remote, ToolRegistry.from_functions([set_light]))
    dialogue.add_user_turn(audio=speech["pcm"])
    events = await _turn(dialogue)
    await dialogue.aclose()
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(r.name, r.ok) for r in results] == [("set_light", True)]
    done = events[-1]
    assert isinstance(done, TurnDone)
    assert (done.text, done.finish_reason) == ("The kitchen light is on.", "stop")
    assert done.metrics.model_calls == 2
    assert [m.role for m in dialogue.history] == ["user", "assistant", "tool", "assistant"]


async def test_seven_spoken_turns_keep_within_five_clips(
    remote: RemoteWorker, remote_script: RemoteScript, speech: dict[str, Any]
) -> None:
    """Past 5 clips every turn is still answered: the oldest clips travel as transcripts."""
    dialogue = Dialogue(remote, params=GenerationParams(max_new_tokens=8))
    for n in range(7):
        remote_script.hear(f"request number {n}")
        remote_script.say(f"Answer {n}.")
        dialogue.add_user_turn(audio=speech["pcm"])
        events = await _turn(dialogue)
        assert not [e for e in events if isinstance(e, ErrorEvent)]
        assert events[-1].text == f"Answer {n}."
    await dialogue.aclose()
    users = [m for m in dialogue.history if m.role == "user"]
    assert len(users) == 7 and dialogue.dropped_turns == 0
    assert [u.content for u in users[:2]] == [
        [TextChunk(text="request number 0")],
        [TextChunk(text="request number 1")],
    ]
    assert all(isinstance(u.content[0], AudioChunk) for u in users[2:])


async def test_an_outage_fails_one_turn_and_the_conversation_goes_on(
    vllm_server: VllmServer,
    vllm_model_dir: Path,
    remote_script: RemoteScript,
    speech: dict[str, Any],
) -> None:
    """The server's connections reset mid-reply: a model_unavailable error ends that turn;
    once it answers again, so does the same conversation."""
    async with TcpProxy(vllm_server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/v1"
        worker = await asyncio.to_thread(  # the relay runs on this loop: do not block it
            RemoteWorker.connect,
            remote_settings(vllm_model_dir, url),
            request_extras=remote_script.request_extras,
        )
        dialogue = Dialogue(worker, settings=DialogueSettings(transcribe_user=False))
        try:
            remote_script.say("Before.")
            dialogue.add_user_turn(audio=speech["pcm"])
            assert (await _turn(dialogue))[-1].text == "Before."

            remote_script.extra["ignore_eos"] = True  # a long free reply, cut mid-way
            remote_script.extra["vllm_xargs"] = SLOW_STEPS  # still running then
            dialogue.params = GenerationParams(max_new_tokens=3000)
            dialogue.add_user_turn(text="Talk.")
            events: list[Any] = []
            async for event in dialogue.respond():
                events.append(event)
                if isinstance(event, TextDelta) and len(events) == 3:
                    await proxy.cut()
            errors = [e for e in events if isinstance(e, ErrorEvent)]
            assert [e.code for e in errors] == ["model_unavailable"]
            assert f"the model server at {url} is unreachable" in errors[0].message
            assert events[-1].finish_reason == "error"

            remote_script.extra.clear()
            dialogue.params = GenerationParams(max_new_tokens=16)
            dialogue.add_user_turn(text="Still there?")
            refused = await _turn(dialogue)
            assert [e.code for e in refused if isinstance(e, ErrorEvent)] == ["model_unavailable"]

            await proxy.restore()
            remote_script.say("After.")
            dialogue.add_user_turn(audio=speech["pcm"])
            assert (await _turn(dialogue))[-1].text == "After."
        finally:
            await dialogue.aclose()
            worker.close()
