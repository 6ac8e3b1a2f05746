"""The ``voxtral-assistant serve`` command: refuses unsafe binds, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import pytest
from websockets.asyncio.client import connect

pytestmark = pytest.mark.timeout(120)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXTRAL_ASSISTANT_")}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


async def test_public_bind_without_token_is_refused(tiny_model_dir) -> None:
    """serve --host 0.0.0.0 without a token exits 2 before loading anything."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assistant",
        "serve",
        "--model",
        str(tiny_model_dir),
        "--host",
        "0.0.0.0",
        env=_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "requires an auth token" in stderr.decode()


async def test_sigterm_closes_sessions_with_1001_and_exits_0(tiny_model_dir) -> None:
    """A running server answers, then on SIGTERM closes its sessions with 1001 and exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assistant",
        "serve",
        "--model",
        str(tiny_model_dir),
        "--device",
        "cpu",
        "--port",
        "0",
        env={**_env(), "VOXTRAL_ASSISTANT_SERVER__TOKEN": "from-env"},
        stderr=asyncio.subprocess.PIPE,
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
