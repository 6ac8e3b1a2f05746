"""``voxtral-assistant serve --backend vllm``: a spoken conversation with tools on a real vLLM.

The command runs as its own process against the shared vLLM server (the tiny Voxtral); a
browser-like client, the official openai SDK's realtime client, streams espeak-ng speech over
``/v1/realtime`` with server VAD. The replies are forced through vLLM (``--forced-replies``), so
the random model calls the server tool of a tools.yaml; the conversation runs past vLLM's 5
clips per request. Then the same process answers the openai SDK's chat completions.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soxr
from openai import AsyncOpenAI

from tests.support.processes import free_port
from tests.support.realtime_sdk import events_until
from tests.support.vllm_server import VllmServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TURNS = 7
"""Two more spoken turns than vLLM takes clips per request."""
VLLM_EVENT_TIMEOUT_S = 180.0
"""How long one awaited event may take: the CPU vLLM answers a turn in seconds, more when busy."""

TOOLS_YAML = """\
version: 1
plugins: none
tools:
  - handler: {python: "assistant.tools.builtin:get_time"}
"""


@pytest.fixture(scope="module")
def serve_process(
    vllm_server: VllmServer, vllm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``serve --backend vllm --model-url …`` on a free port; yields its base URL."""
    folder = tmp_path_factory.mktemp("serve-on-vllm")
    (folder / "tools.yaml").write_text(TOOLS_YAML)
    script = {
        "transcripts": [f"spoken request {n}" for n in range(TURNS)],
        "replies": [
            {"tool_calls": [{"name": "get_time", "arguments": {}}]},
            {"text": "It is time."},
            *({"text": f"Answer {n}."} for n in range(1, TURNS)),
            {"text": "Hello from the OpenAI API."},
        ],
    }
    (folder / "replies.json").write_text(json.dumps(script))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "assistant",
        "serve",
        "--backend",
        "vllm",
        "--model-url",
        vllm_server.base_url,
        "--model",
        str(vllm_model_dir),
        "--tools",
        str(folder / "tools.yaml"),
        "--port",
        str(port),
        "--forced-replies",
        str(folder / "replies.json"),
    ]
    log = (folder / "serve.log").open("wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (folder / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (folder / "serve.log").read_text()
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _pcm24k_b64_chunks(pcm_16k: np.ndarray, silence_s: float = 1.5) -> list[str]:
    audio = np.concatenate([pcm_16k, np.zeros(int(16000 * silence_s), dtype=np.int16)])
    pcm = np.asarray(soxr.resample(audio, 16000, 24000), dtype=np.int16)
    return [
        base64.b64encode(pcm[i : i + 2400].astype("<i2").tobytes()).decode()
        for i in range(0, len(pcm), 2400)
    ]


async def test_a_spoken_conversation_with_tools_on_vllm(
    serve_process: str, speech: dict[str, Any]
) -> None:
    """Seven spoken turns over /v1/realtime: VAD commits, a server tool, every turn answered."""
    client = AsyncOpenAI(
        api_key="unused",
        base_url=f"{serve_process}/v1",
        websocket_base_url=f"ws{serve_process[4:]}/v1",
    )
    chunks = _pcm24k_b64_chunks(speech["pcm"])
    turns: list[list[Any]] = []
    async with client.realtime.connect(model="voxtral") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                        "transcription": {"model": "voxtral"},
                    }
                },
            }
        )
        await events_until(conn, "session.updated", VLLM_EVENT_TIMEOUT_S)
        for _ in range(TURNS):
            for chunk in chunks:
                await conn.input_audio_buffer.append(audio=chunk)
            turns.append(await events_until(conn, "response.done", VLLM_EVENT_TIMEOUT_S))

    kinds = [e.type for e in turns[0]]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index(
        "input_audio_buffer.committed"
    )
    call = next(e for e in turns[0] if e.type == "response.function_call_arguments.done")
    assert call.name == "get_time"
    output = next(
        e.item
        for e in turns[0]
        if e.type == "conversation.item.created" and e.item.type == "function_call_output"
    )
    assert "time" in json.loads(output.output)
    texts = [next(e for e in t if e.type == "response.output_text.done").text for t in turns]
    assert texts == ["It is time.", *(f"Answer {n}." for n in range(1, TURNS))]
    assert all(t[-1].response.status == "completed" for t in turns)
    errors = [e for t in turns for e in t if e.type == "error"]
    assert errors == []


async def test_the_same_process_answers_chat_completions(serve_process: str) -> None:
    """The OpenAI SDK's chat completions against serve (itself on vLLM)."""
    client = AsyncOpenAI(api_key="unused", base_url=f"{serve_process}/v1", max_retries=0)
    models = await client.models.list()
    completion = await client.chat.completions.create(
        model=models.data[0].id, messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.choices[0].message.content == "Hello from the OpenAI API."
    assert models.data[0].model_extra["max_model_len"] == 4096  # type: ignore[index]
