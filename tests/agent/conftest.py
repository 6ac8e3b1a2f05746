"""Fixtures for the desktop agent's tests: spoken commands, a tools file, forced replies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.testing.speech import synthesize, write_wav
from tests.support.pulse import VirtualAudio

COMMAND_TEXT = "What time is it"
TRANSCRIPT = "What time is it?"
REPLY_SENTENCES = ("It is ten past ten.", "Anything else?")
REPLY_TEXT = " ".join(REPLY_SENTENCES)
TOOL_CALL = {"name": "get_time", "arguments": {"timezone": "UTC"}}


@pytest.fixture(scope="session")
def command_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken command (real espeak-ng speech) after half a second of silence."""
    speech = synthesize(COMMAND_TEXT)
    pcm = np.concatenate([np.zeros(8000, dtype=np.int16), speech])
    return Path(write_wav(str(tmp_path_factory.mktemp("agent") / "command.wav"), pcm))


@pytest.fixture(scope="session")
def tools_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tools.yaml with the shipped get_time tool only (no plugins)."""
    path = tmp_path_factory.mktemp("agent-tools") / "tools.yaml"
    path.write_text(
        "version: 1\nplugins: none\ntools:\n"
        '  - handler: {python: "assistant.tools.builtin:get_time"}\n',
        encoding="utf-8",
    )
    return path


ScriptWriter = Callable[..., Path]


@pytest.fixture
def forced_replies(tmp_path: Path) -> ScriptWriter:
    """Write a forced-replies file; by default: the transcript, a get_time call, the reply."""

    def write(
        transcripts: list[str] | None = None, replies: list[dict[str, Any]] | None = None
    ) -> Path:
        script = {
            "transcripts": [TRANSCRIPT] if transcripts is None else transcripts,
            "replies": (
                [{"tool_calls": [TOOL_CALL]}, {"text": REPLY_TEXT}] if replies is None else replies
            ),
        }
        path = tmp_path / "forced.json"
        path.write_text(json.dumps(script), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="module")
def virtual_audio() -> Iterator[VirtualAudio]:
    """A private PulseAudio server (default speaker and microphone) seen by PortAudio here."""
    from assistant.audio.capture import rescan_devices

    with VirtualAudio() as audio:
        rescan_devices()
        yield audio
    rescan_devices()
