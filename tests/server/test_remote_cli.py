"""The commands with ``--backend vllm --model-url``, run as processes against a real serve."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = pytest.mark.timeout(180)


async def _run(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assistant",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def wav_file(tmp_path: Path, speech_16k) -> Path:
    path = tmp_path / "question.wav"
    buffer = io.BytesIO()
    sf.write(buffer, speech_16k, 16000, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())
    return path


async def test_ask_streams_the_remote_reply(server, script, tiny_model_dir, wav_file) -> None:
    """ask --backend vllm: the reply of the model behind the URL, with its usage."""
    script.say("Remote hello.")
    url = f"http://127.0.0.1:{server.port}/v1"
    status, out, err = await _run(
        "ask", str(wav_file), "--backend", "vllm", "--model-url", url,
        "--model", str(tiny_model_dir), "--json",
    )  # fmt: skip
    assert status == 0, err
    done = json.loads(out.strip().splitlines()[-1])
    assert (done["text"], done["finish_reason"]) == ("Remote hello.", "stop")
    assert done["usage"]["audio_tokens"] == 375


async def test_transcribe_uses_the_remote_model(server, script, tiny_model_dir, wav_file) -> None:
    """transcribe --backend vllm: the remote transcription."""
    script.hear("What is the weather in Paris today?")
    url = f"http://127.0.0.1:{server.port}/v1"
    status, out, err = await _run(
        "transcribe", str(wav_file), "--language", "en", "--backend", "vllm",
        "--model-url", url, "--model", str(tiny_model_dir),
    )  # fmt: skip
    assert status == 0, err
    assert out.strip() == "What is the weather in Paris today?"


async def test_serve_with_an_unreachable_server_fails_in_one_line(tiny_model_dir) -> None:
    """serve --backend vllm with nothing at the URL: exit 2, one line naming URL and flag."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    status, _, err = await _run(
        "-q", "serve", "--backend", "vllm", "--model-url", url, "--model", str(tiny_model_dir),
        "--port", "0",
    )  # fmt: skip
    assert status == 2
    lines = err.strip().splitlines()  # -q: warnings and errors only
    assert len(lines) == 1, err
    assert lines[0].startswith(f"voxtral-assistant: cannot reach the model server at {url}")
    assert "--model-url" in lines[0]


async def test_the_vllm_backend_without_a_url_is_a_settings_error(tiny_model_dir) -> None:
    """--backend vllm alone: the settings error says which flag is missing."""
    status, _, err = await _run("serve", "--backend", "vllm", "--model", str(tiny_model_dir))
    assert status == 2
    assert "the vllm backend needs the server's URL: pass --model-url" in err
