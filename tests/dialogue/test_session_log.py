"""The session log: one JSONL line per turn, flushed per turn, readable after a kill -9."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.conversation.session_log import LoggedInput, SessionLog, read_session_log
from assistant.events import ToolCall, ToolResult, TurnDone, TurnMetrics
from tests.dialogue.house import turn

REPO = Path(__file__).resolve().parents[2]


def done(text: str = "Done.") -> TurnDone:
    call = ToolCall("abcdefghi", "set_light", {"room": "hall"})
    result = ToolResult(call.id, call.name, '{"ok": true}', duration_s=0.01)
    return TurnDone(text, "stop", (call,), (result,), TurnMetrics(model_calls=2))


def test_each_turn_is_one_json_line(tmp_path: Path) -> None:
    """A session line, then one line per turn with inputs, reply, calls, results and metrics."""
    log = SessionLog(tmp_path / "s.jsonl", "conv_1")
    log.write_turn(1, [LoggedInput("item_1", text="hall light")], done())
    log.close()
    session, turn_line = read_session_log(tmp_path / "s.jsonl")
    assert session["type"] == "session" and session["conversation_id"] == "conv_1"
    assert turn_line["turn"] == 1 and turn_line["assistant"] == "Done."
    assert turn_line["user"] == [
        {
            "item_id": "item_1",
            "text": "hall light",
            "audio_s": 0.0,
            "audio_file": None,
            "transcript": None,
        }
    ]
    assert turn_line["tool_calls"] == [
        {"id": "abcdefghi", "name": "set_light", "arguments": {"room": "hall"}}
    ]
    assert turn_line["tool_results"][0]["content"] == '{"ok": true}'
    assert turn_line["metrics"]["model_calls"] == 2


def test_audio_is_saved_as_a_wav_file_reference(tmp_path: Path) -> None:
    """With audio logging on, the clip is a WAV next to the log, referenced by relative path."""
    log = SessionLog(tmp_path / "s.jsonl", "conv_1", log_audio=True)
    clip = (np.sin(np.arange(1600) / 5) * 8000).astype(np.int16)
    log.write_turn(1, [LoggedInput("item_1", audio=clip, audio_s=0.1)], done())
    log.close()
    entry = read_session_log(tmp_path / "s.jsonl")[1]["user"][0]
    samples, rate = sf.read(tmp_path / entry["audio_file"], dtype="int16")
    assert rate == 16000 and np.array_equal(samples, clip)


def test_a_reopened_log_is_appended_to(tmp_path: Path) -> None:
    """Opening an existing log keeps its lines and adds a new session line."""
    for n in (1, 2):
        log = SessionLog(tmp_path / "s.jsonl", f"conv_{n}")
        log.write_turn(1, [], done())
        log.close()
    kinds = [r["type"] for r in read_session_log(tmp_path / "s.jsonl")]
    assert kinds == ["session", "turn", "session", "turn"]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    """A line cut short by a crash is ignored; the complete lines are returned."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"type": "turn", "turn": 1}\n{"type": "turn", "tu', encoding="utf-8")
    assert read_session_log(path) == [{"type": "turn", "turn": 1}]


def test_a_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    """Damage inside the file is reported with its line number."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        read_session_log(path)


def test_writing_after_close_is_refused(tmp_path: Path) -> None:
    """A closed log raises instead of silently losing the turn."""
    log = SessionLog(tmp_path / "s.jsonl", "conv_1")
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.write_turn(1, [], done())


async def test_dialogue_logs_every_turn(scripted, house, speech, tmp_path: Path) -> None:
    """A dialogue with a log path writes each turn's transcript, calls and results."""
    worker, script = scripted
    script.say(None, [{"name": "set_light", "arguments": {"room": "hall", "state": "on"}}])
    script.say("The hall light is on.")
    script.hear("hall light on")
    settings = DialogueSettings(session_log_path=tmp_path / "log.jsonl")
    dialogue = Dialogue(worker, house.tools, settings)
    item_id = dialogue.add_user_turn(audio=speech("hall light on"))
    await turn(dialogue)
    await dialogue.aclose()
    record = read_session_log(tmp_path / "log.jsonl")[-1]
    assert record["user"][0]["item_id"] == item_id
    assert record["user"][0]["transcript"] == "hall light on"
    assert record["user"][0]["audio_file"] is None
    assert [c["name"] for c in record["tool_calls"]] == ["set_light"]
    assert record["tool_results"][0]["ok"] is True
    assert record["assistant"] == "The hall light is on."
    assert record["metrics"]["model_calls"] == 2
    assert record["metrics"]["speech_end_to_first_tool_ms"] is not None


def test_log_survives_kill_9(tiny_model_dir: Path, tmp_path: Path) -> None:
    """After kill -9 mid-conversation every completed turn is in the file and it parses."""
    log_path = tmp_path / "killed.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.dialogue.session_child", str(tiny_model_dir), str(log_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    completed = 0
    try:
        deadline = time.monotonic() + 120
        assert child.stdout is not None
        while completed < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([child.stdout], [], [], 1.0)
            if ready:
                line = child.stdout.readline()
                assert line, "the conversation process ended early"
                completed = int(line.split()[1])
        assert completed >= 3
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    turns = [r for r in read_session_log(log_path) if r["type"] == "turn"]
    assert [t["turn"] for t in turns][:completed] == list(range(1, completed + 1))
    for t in turns[:completed]:
        assert t["assistant"] == f"Light {t['turn']} is on."
        assert t["tool_results"][0]["ok"] is True
        assert (log_path.parent / t["user"][0]["audio_file"]).stat().st_size > 0
