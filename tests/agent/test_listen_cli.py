"""``voxtral-assistant listen``: file input with JSON output, and one clear line per mistake.

Mistakes are checked in this process through ``main()`` (they end before the model runs, so
``listen`` returns instead of ending the process); whole runs start the command as a process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant.cli import build_parser, main
from tests.agent.cli import run_listen
from tests.agent.conftest import REPLY_TEXT, TOOL_CALL, TRANSCRIPT, ScriptWriter

ListenMain = Callable[..., tuple[int, str]]


def test_input_file_with_json_prints_the_turn_event_by_event(
    tiny_model_dir: Path, command_wav: Path, tools_file: Path, forced_replies: ScriptWriter
) -> None:
    """``--input FILE.wav --json``: every event of the turn, in order, one JSON object a line;
    the user's transcript on its own, whenever it is ready after the clip joined."""
    done = run_listen(
        "--model", tiny_model_dir, "--input", command_wav, "--fast", "--json", "--no-speak",
        "--tools", tools_file, "--forced-replies", forced_replies(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    deltas = [e for e in events if e["type"] == "text_delta"]
    (transcript,) = [e for e in events if e["type"] == "user_transcript"]
    others = [e for e in events if e["type"] not in ("text_delta", "user_transcript")]
    expected = [
        ("agent_status", {"state": "loading", "detail": str(tiny_model_dir)}),
        ("agent_status", {"state": "listening"}),
        ("speech_started", {}),
        ("agent_status", {"state": "hearing"}),
        ("speech_end_likely", {}),
        ("speech_stopped", {}),
        ("agent_status", {"state": "listening"}),
        ("utterance", {"truncated": False}),
        ("agent_status", {"state": "thinking"}),
        ("user_clip", {"transcribed": True}),
        ("tool_call", {"name": "get_time", "arguments": TOOL_CALL["arguments"]}),
        ("tool_started", {}),
        ("agent_status", {"state": "calling_tool", "detail": "get_time"}),
        ("tool_result", {"name": "get_time", "ok": True}),
        ("agent_status", {"state": "thinking"}),
        ("turn_done", {"text": REPLY_TEXT, "finish_reason": "stop"}),
        ("agent_status", {"state": "listening"}),
        ("agent_status", {"state": "stopped"}),
    ]
    assert [e["type"] for e in others] == [kind for kind, _ in expected]
    for event, (_, fields) in zip(others, expected, strict=True):
        assert event.items() >= fields.items(), event
        assert event["at_s"] >= 0
    speech = others[2:8]
    assert speech[0]["start_ms"] < speech[3]["end_ms"] == speech[5]["end_ms"]
    assert 0.8 < speech[5]["duration_s"] < 2.5  # "What time is it" after 0.5 s of silence
    clip = others[9]
    assert transcript["item_id"] == clip["item_id"] and transcript["text"] == TRANSCRIPT
    assert transcript["at_s"] >= clip["at_s"]
    call, started, result = others[10], others[11], others[13]
    assert started["call"]["id"] == call["id"] == result["call_id"]
    assert json.loads(result["content"])["timezone"] == "UTC"
    assert "".join(d["text"] for d in deltas) == REPLY_TEXT
    turn = others[15]
    assert [c["name"] for c in turn["tool_calls"]] == ["get_time"]
    assert turn["metrics"]["model_calls"] == 2
    assert turn["metrics"]["speech_end_to_first_delta_ms"] > 0


@pytest.fixture
def listen_main(capsys: pytest.CaptureFixture[str]) -> Iterator[ListenMain]:
    """``main(["listen", ...])`` here; returns the exit status and what went to stderr."""
    root = logging.getLogger()
    ours = logging.getLogger("assistant")
    saved = (list(root.handlers), root.level, ours.level)

    def run(*args: str | Path) -> tuple[int, str]:
        status = main(["listen", *map(str, args)])
        return status, capsys.readouterr().err

    yield run
    # main() installs a log handler on the captured stderr: put the old ones back.
    root.handlers[:], root.level = saved[0], saved[1]
    ours.setLevel(saved[2])


def test_a_missing_model_is_one_clear_line(
    listen_main: ListenMain, tmp_path: Path, command_wav: Path
) -> None:
    """A model folder that does not exist fails with status 2 and one line naming it."""
    status, err = listen_main("--model", tmp_path / "nowhere", "--input", command_wav, "--no-speak")
    assert status == 2
    (line,) = [line for line in err.splitlines() if line.startswith("voxtral-assistant:")]
    assert "nowhere" in line


def test_no_microphone_is_a_clear_error_before_the_model_loads(tiny_model_dir: Path) -> None:
    """Without any input device, listen says so (and offers --input) instead of loading."""
    done = run_listen(
        "--model", tiny_model_dir, "--no-speak",
        env={"PULSE_SERVER": "unix:/nonexistent/pulse"},  # no sound server: no devices
    )  # fmt: skip
    assert done.returncode == 2
    assert "no input device" in done.stderr and "--input" in done.stderr
    assert "loaded" not in done.stderr


def test_without_a_speaker_replies_are_text_after_one_warning(
    tiny_model_dir: Path, command_wav: Path, forced_replies: ScriptWriter
) -> None:
    """No output device and no --no-speak: one warning naming --no-speak, then replies as text."""
    done = run_listen(
        "--model", tiny_model_dir, "--input", command_wav, "--fast", "--plain",
        "--forced-replies", forced_replies(replies=[{"text": "Hi."}]),
        env={"PULSE_SERVER": "unix:/nonexistent/pulse"},  # no sound server: no devices
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "assistant: Hi." in done.stdout
    (warning,) = [line for line in done.stderr.splitlines() if "speech" in line]
    assert "WARNING" in warning and "cannot play speech (no default output device" in warning
    assert warning.endswith(
        "replies are shown as text only; connect a speaker or pick one with --output-device, "
        "or pass --no-speak to hide this warning"
    )


def test_a_named_speaker_that_does_not_exist_is_refused(
    listen_main: ListenMain, tiny_model_dir: Path, command_wav: Path
) -> None:
    """``--output-device`` that names no device is a mistake: one line, before the model loads."""
    status, err = listen_main(
        "--model", tiny_model_dir, "--input", command_wav,
        "--output-device", "no such speaker anywhere",
    )  # fmt: skip
    assert status == 2
    (line,) = [line for line in err.splitlines() if line.startswith("voxtral-assistant:")]
    assert "'no such speaker anywhere'" in line and "--no-speak" in line
    assert "loaded" not in err


def test_an_unreadable_recording_is_a_clear_error(
    listen_main: ListenMain, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A file that is not audio is refused with its name, before the model loads."""
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio", encoding="utf-8")
    status, err = listen_main("--model", tiny_model_dir, "--input", bad, "--no-speak")
    assert status == 2
    assert "notes.wav" in err and "loaded" not in err


def test_an_unknown_voice_is_refused_before_the_model_loads(
    listen_main: ListenMain, tiny_model_dir: Path, command_wav: Path
) -> None:
    """``--voice`` that espeak-ng does not know fails at once with the voice's name."""
    status, err = listen_main("--model", tiny_model_dir, "--input", command_wav, "--voice", "xx-no")
    assert status == 2
    assert "'xx-no'" in err and "loaded" not in err


def test_without_espeak_ng_speech_is_refused_with_the_way_out(
    listen_main: ListenMain,
    tiny_model_dir: Path,
    command_wav: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No espeak-ng program: how to install it or ``--no-speak``, before the model loads."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no programs at all
    status, err = listen_main("--model", tiny_model_dir, "--input", command_wav)
    assert status == 2
    assert "espeak-ng is not installed" in err and "--no-speak" in err and "loaded" not in err


def test_a_session_log_that_cannot_be_written_is_refused_before_the_model_loads(
    listen_main: ListenMain, tiny_model_dir: Path, command_wav: Path, tmp_path: Path
) -> None:
    """``--session-log`` inside a file (not a folder) fails at once, naming the log."""
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    log = tmp_path / "a-file" / "session.jsonl"
    status, err = listen_main(
        "--model", tiny_model_dir, "--input", command_wav, "--no-speak", "--session-log", log
    )
    assert status == 2
    assert f"cannot write the session log {log}" in err and "loaded" not in err


def test_fast_needs_an_input_file(listen_main: ListenMain) -> None:
    """``--fast`` without ``--input`` is a usage mistake."""
    status, err = listen_main("--fast", "--no-speak")
    assert status == 2 and "--fast applies to --input" in err


def test_help_says_barge_in_is_for_headphones_or_echo_cancellers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The help of ``listen`` explains when barge-in is safe and what half-duplex does."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--barge-in" in text and "headphones" in text and "echo canceller" in text
    assert "half-duplex" in text
    assert "--forced-replies" not in text


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_gpu(), reason="checks the behaviour of a machine without a GPU")
def test_without_a_gpu_auto_warns_and_runs_on_the_cpu(
    tiny_model_dir: Path, command_wav: Path, forced_replies: ScriptWriter
) -> None:
    """No GPU: the default device runs on the CPU after a warning about speed."""
    done = run_listen(
        "--model", tiny_model_dir, "--input", command_wav, "--fast", "--no-speak", "--plain",
        "--forced-replies", forced_replies(replies=[{"text": "Hi."}]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no GPU found" in done.stderr and "seconds" in done.stderr
    assert "assistant: Hi." in done.stdout


@pytest.mark.skipif(_has_gpu(), reason="checks the behaviour of a machine without a GPU")
def test_without_a_gpu_asking_for_cuda_offers_the_cpu(
    listen_main: ListenMain, tiny_model_dir: Path, command_wav: Path
) -> None:
    """``--device cuda`` with no GPU fails in one line that points to the CPU."""
    status, err = listen_main(
        "--model", tiny_model_dir, "--input", command_wav, "--no-speak", "--device", "cuda"
    )
    assert status == 2
    (line,) = [line for line in err.splitlines() if line.startswith("voxtral-assistant:")]
    assert "no CUDA GPU" in line and "--device cpu" in line


def test_with_the_echo_canceller_the_vad_ignores_the_level() -> None:
    """listen's VAD keeps quiet_db without echo cancellation and drops it with it: the
    canceller turns the user's voice down while the speaker plays."""
    from assistant.config import VadSettings
    from assistant.desktop.listen import vad_settings

    base = VadSettings(quiet_db=30.0, silence_duration_ms=700)
    assert vad_settings(base, echo_cancelling=False) == base
    cancelling = vad_settings(base, echo_cancelling=True)
    assert cancelling.quiet_db is None and cancelling.silence_duration_ms == 700
