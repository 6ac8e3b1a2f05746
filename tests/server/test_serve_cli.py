"""The ``voxtral-assistant serve`` command: refuses unsafe binds, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

pytestmark = pytest.mark.timeout(120)


async def _serve(*args: str, **env: str) -> asyncio.subprocess.Process:
    """``voxtral-assistant serve ARGS`` in a subprocess with a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOXTRAL_ASSISTANT_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assistant",
        "serve",
        *args,
        env={**base, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env},
        stderr=asyncio.subprocess.PIPE,
    )


async def _failure(proc: asyncio.subprocess.Process) -> str:
    """Wait for a serve that must fail at start; its exit status is 2; return its stderr."""
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    return stderr.decode()


async def test_public_bind_without_token_is_refused(tiny_model_dir) -> None:
    """serve --host 0.0.0.0 without a token exits 2 before loading anything."""
    proc = await _serve("--model", str(tiny_model_dir), "--host", "0.0.0.0")
    assert "requires an auth token" in await _failure(proc)


async def test_a_port_in_use_is_reported_before_the_model_loads(tiny_model_dir) -> None:
    """serve on a taken port exits 2 with one clear line and never loads the model."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await _serve("--model", str(tiny_model_dir), "--port", str(port))
        stderr = await _failure(proc)
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr
    assert "loaded" not in stderr


async def test_a_broken_tools_file_is_one_clear_line(tiny_model_dir, tmp_path: Path) -> None:
    """serve --tools with invalid YAML exits 2 naming the file and line, without a traceback."""
    tools = tmp_path / "tools.yaml"
    tools.write_text("tools: [{broken\n")
    proc = await _serve("--model", str(tiny_model_dir), "--port", "0", "--tools", str(tools))
    stderr = await _failure(proc)
    assert f"{tools}:" in stderr
    assert "Traceback" not in stderr


async def test_sigterm_closes_sessions_with_1001_and_exits_0(tiny_model_dir) -> None:
    """A running server answers, then on SIGTERM closes its sessions with 1001 and exits 0."""
    proc = await _serve(
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--port",
        "0",
        VOXTRAL_ASSISTANT_SERVER__TOKEN="from-env",
    )
    try:
        assert proc.stderr is not None
        port = None
        async with asyncio.timeout(60):
            while port is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "the server exited before listening"
                match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
                port = int(match.group(1)) if match else None
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        ws = await connect(url, additional_headers={"Authorization": "Bearer from-env"})
        assert json.loads(await ws.recv())["type"] == "session.created"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await ws.wait_closed()
            await proc.wait()
        assert ws.close_code == 1001
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
