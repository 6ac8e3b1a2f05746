"""What the clients see when vLLM dies (SIGKILL of the whole server) in the middle of replies.

One server of its own is killed while the openai SDK and a ``RemoteWorker`` both stream from
it; then both try again. (A server that comes back is tested through a relay in
``test_remote_dialogue``: a second start would cost another minute.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
from mistral_common.protocol.instruct.messages import UserMessage

from assistant.config import GenerationParams
from assistant.events import ErrorEvent, ResponseDone, TextDelta
from assistant.model.remote import RemoteWorker
from tests.support.vllm_server import SLOW_LONG_REPLY, VllmServer
from tests.vllm.conftest import remote_settings

pytestmark = pytest.mark.slow


async def _sdk_stream(client: openai.AsyncOpenAI, model: str, started: asyncio.Event) -> Any:
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Talk."}],
        stream=True,
        max_tokens=3000,
        extra_body=SLOW_LONG_REPLY,
    )
    try:
        async for count, _ in _numbered(stream):
            if count == 3:
                started.set()
    except openai.APIConnectionError as exc:
        return exc
    return None


async def _numbered(stream: Any) -> Any:
    count = 0
    async for chunk in stream:
        count += 1
        yield count, chunk


async def _remote_stream(worker: RemoteWorker, started: asyncio.Event) -> list[Any]:
    events = []
    stream = worker.respond(
        [UserMessage(content="Talk.")], params=GenerationParams(max_new_tokens=3000)
    )
    async for event in stream:
        events.append(event)
        if isinstance(event, TextDelta) and len(events) == 3:
            started.set()
    return events


async def _scenario(server: VllmServer, model_dir: Path) -> dict[str, Any]:
    worker = await asyncio.to_thread(
        RemoteWorker.connect,
        remote_settings(model_dir, server.base_url),
        request_extras=lambda kind: SLOW_LONG_REPLY if kind == "chat" else {},
    )
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    sdk_started, remote_started = asyncio.Event(), asyncio.Event()
    sdk = asyncio.create_task(_sdk_stream(client, server.model, sdk_started))
    remote = asyncio.create_task(_remote_stream(worker, remote_started))
    await asyncio.wait_for(asyncio.gather(sdk_started.wait(), remote_started.wait()), 120)
    await asyncio.to_thread(server.kill)
    outcome: dict[str, Any] = {"url": server.base_url}
    outcome["sdk_broken"] = await sdk
    outcome["remote_broken"] = await remote
    try:
        await client.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "Hi."}]
        )
    except openai.APIConnectionError as exc:
        outcome["sdk_refused"] = exc
    outcome["remote_refused"] = [e async for e in worker.respond([UserMessage(content="Hi.")])]
    worker.close()
    await client.close()
    return outcome


@pytest.fixture(scope="module")
def crash(vllm_executable: Path, vllm_model_dir: Path) -> dict[str, Any]:
    """Start a vLLM of its own, kill it mid-reply, and record what every client saw."""
    with VllmServer(vllm_model_dir, vllm_executable) as server:
        return asyncio.run(_scenario(server, vllm_model_dir))


def test_the_sdk_sees_a_broken_stream_then_refused_connections(crash: dict[str, Any]) -> None:
    """The SDK: APIConnectionError mid-stream and on the next request."""
    broken, refused = crash["sdk_broken"], crash.get("sdk_refused")
    assert isinstance(broken, openai.APIConnectionError)
    assert isinstance(refused, openai.APIConnectionError)
    # The SDK says "Connection error."; the reason is in the httpx exception underneath
    # (the SDK may run on httpx or its fork httpx2: compare class names).
    assert str(broken) == str(refused) == "Connection error."
    assert type(broken.__cause__).__name__ == "RemoteProtocolError"
    assert str(broken.__cause__) == (
        "peer closed connection without sending complete message body (incomplete chunked read)"
    )
    assert type(refused.__cause__).__name__ == "ConnectError"


def test_a_reply_cut_by_the_crash_ends_with_model_unavailable(crash: dict[str, Any]) -> None:
    """The RemoteWorker: the text so far, one model_unavailable error, an ``error`` end."""
    events = crash["remote_broken"]
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["model_unavailable"]
    assert errors[0].message.startswith(f"the model server at {crash['url']} is unreachable")
    assert "incomplete chunked read" in errors[0].message
    assert sum(isinstance(e, TextDelta) for e in events) >= 3
    assert isinstance(events[-1], ResponseDone) and events[-1].finish_reason == "error"


def test_the_next_request_is_refused_in_one_sentence(crash: dict[str, Any]) -> None:
    """After the crash: model_unavailable naming the URL and the refused connection."""
    error, done = crash["remote_refused"]
    assert error.code == "model_unavailable"
    assert error.message.startswith(f"the model server at {crash['url']} is unreachable")
    assert "ConnectError" in error.message and "\n" not in error.message
    assert done.finish_reason == "error"
