"""`voxtral-assistant wyoming` as a process: Home Assistant's four requests over stdio://, a
spoken command that calls a tool of a real MCP server, and refusals before the model loads."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from asyncio.subprocess import PIPE
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from assistant.cli import main
from tests.server.wyoming import ha
from tests.support.mcp import stdio_entry

LIGHT_ON = {"room": "kitchen", "state": "on"}
START_S = 180.0
"""Loading the tiny model (and torch) in a fresh process on a busy machine."""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() installs a log handler on the (captured) stderr; put the old ones back after."""
    root, ours = logging.getLogger(), logging.getLogger("assistant")
    saved = (list(root.handlers), root.level, ours.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    ours.setLevel(saved[2])


async def next_of(stdout: asyncio.StreamReader, kind: str, timeout_s: float = ha.WAIT_S) -> Event:
    while True:
        event = await asyncio.wait_for(async_read_event(stdout), timeout_s)
        assert event is not None, f"the server closed stdout before {kind}"
        if event.type == kind:
            return event


async def test_home_assistant_requests_over_stdio_with_an_mcp_tool(
    tiny_model_dir: Path, command_16k: np.ndarray, tmp_path: Path
) -> None:
    """describe, a spoken command transcribed, the turn calling an MCP tool, the reply spoken."""
    calls = tmp_path / "calls.jsonl"
    tools = tmp_path / "tools.yaml"
    document = {"version": 1, "plugins": "none", "mcp_servers": [stdio_entry(calls)]}
    tools.write_text(yaml.safe_dump(document), encoding="utf-8")
    replies = tmp_path / "replies.json"
    replies.write_text(
        json.dumps(
            {
                "transcripts": ["Turn on the kitchen light."],
                "replies": [
                    {"tool_calls": [{"name": "set_light", "arguments": LIGHT_ON}]},
                    {"text": "The kitchen light is on."},
                ],
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", "wyoming", "--uri", "stdio://",
        "--model", str(tiny_model_dir), "--device", "cpu", "--tools", str(tools),
        "--forced-replies", str(replies),
        stdin=PIPE, stdout=PIPE, stderr=PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        await async_write_event(Describe().event(), process.stdin)
        info = Info.from_event(await next_of(process.stdout, "info", START_S))
        assert info.asr and info.handle and info.tts

        await async_write_event(Transcribe(language="en").event(), process.stdin)
        await async_write_event(AudioStart(16000, 2, 1).event(), process.stdin)
        for chunk in ha.chunks_of(command_16k):
            await async_write_event(AudioChunk(16000, 2, 1, chunk).event(), process.stdin)
        await async_write_event(AudioStop().event(), process.stdin)
        heard = Transcript.from_event(await next_of(process.stdout, "transcript"))
        assert (heard.text, heard.language) == ("Turn on the kitchen light.", "en")

        context = {"conversation_id": "01JSTDIO"}
        await async_write_event(Transcript(heard.text, context=context).event(), process.stdin)
        handled = await next_of(process.stdout, "handled")
        assert handled.data["text"] == "The kitchen light is on."
        (logged,) = [json.loads(line) for line in calls.read_text().splitlines()]
        assert (logged["room"], logged["state"]) == ("kitchen", "on")

        await async_write_event(Synthesize(text=handled.data["text"]).event(), process.stdin)
        start = await next_of(process.stdout, "audio-start")
        chunk = await next_of(process.stdout, "audio-chunk")
        await next_of(process.stdout, "audio-stop")
        assert start.data["rate"] == chunk.data["rate"] and chunk.payload

        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), ha.WAIT_S) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_a_public_address_without_allow_remote_is_refused(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """Binding off loopback needs --allow-remote: refused at once, saying Wyoming has no auth."""
    assert main(["wyoming", "--uri", "tcp://0.0.0.0:10300"]) == 2
    err = capsys.readouterr().err
    assert "no authentication" in err and "--allow-remote" in err


def test_a_taken_port_is_refused_before_the_model_loads(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """A busy port is one line on stderr, before any attempt to find the (missing) model."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["wyoming", "--uri", f"tcp://127.0.0.1:{port}", "--model", "/nonexistent"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and "/nonexistent" not in err
