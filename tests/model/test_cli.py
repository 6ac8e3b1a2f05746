"""The ask and transcribe commands on the tiny test model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli import main


def test_ask_json_reports_the_reply(tiny_model_dir: Path, clips, capsys) -> None:
    """`ask --json` prints the final reply with usage for the given clips and question."""
    status = main(
        [
            "ask",
            str(clips["short"]),
            str(clips["other"]),
            "--text",
            "Compare them",
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--max-new-tokens",
            "5",
            "--json",
        ]
    )
    assert status == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["usage"]["audio_tokens"] == 2 * 375
    assert done["usage"]["generated_tokens"] <= 5
    assert done["finish_reason"] in ("stop", "length")


def test_ask_offers_the_tools_of_a_tools_file(
    tiny_model_dir: Path, clips, tmp_path, capsys
) -> None:
    """--tools puts the tools into the prompt (the prompt grows by their schema)."""
    tools = tmp_path / "tools.yaml"
    tools.write_text(
        "version: 1\nplugins: none\ntools:\n"
        '  - handler: {python: "assistant.tools.builtin:get_time"}\n',
        encoding="utf-8",
    )
    common = ["ask", str(clips["short"]), "--model", str(tiny_model_dir), "--json"]
    common += ["--max-new-tokens", "1"]
    assert main(common) == 0
    without = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main([*common, "--tools", str(tools)]) == 0
    with_tools = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert with_tools["usage"]["prompt_tokens"] > without["usage"]["prompt_tokens"]


def test_ask_rejects_unreadable_audio(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    """A file that is not audio stops the command with one clear line and status 2."""
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio", encoding="utf-8")
    assert main(["ask", str(bad), "--model", str(tiny_model_dir)]) == 2
    assert "not readable audio" in capsys.readouterr().err


def test_ask_rejects_a_zero_token_limit(tiny_model_dir: Path, clips, capsys) -> None:
    """--max-new-tokens 0 stops the command with one clear line and status 2, no traceback."""
    args = ["ask", str(clips["short"]), "--model", str(tiny_model_dir), "--max-new-tokens", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "model.max_new_tokens: Input should be greater than or equal to 1" in err


def test_transcribe_json(tiny_model_dir: Path, clips, capsys) -> None:
    """`transcribe --language en --json` prints the text and the language asked for."""
    args = ["transcribe", str(clips["short"]), "--model", str(tiny_model_dir)]
    status = main([*args, "--language", "en", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["language"] == "en"
    assert isinstance(result["text"], str)


def test_transcribe_rejects_a_bad_language_code(tiny_model_dir: Path, clips, capsys) -> None:
    """--language must be a two-letter code."""
    args = ["transcribe", str(clips["short"]), "--model", str(tiny_model_dir)]
    assert main([*args, "--language", "english"]) == 2
    assert "ISO 639-1" in capsys.readouterr().err


@pytest.mark.parametrize("code", ["xx", "qq", "e1"])
def test_transcribe_refuses_an_unknown_language_before_the_model_loads(
    tiny_model_dir: Path, clips, capsys, code: str
) -> None:
    """--language with two characters that name no language: one line, status 2, no load."""
    args = ["transcribe", str(clips["short"]), "--model", str(tiny_model_dir)]
    assert main([*args, "--language", code]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"voxtral-assistant: --language {code!r} is not an ISO 639-1 language code "
        "(two letters, like en or fr)"
    ]


@pytest.mark.slow
def test_ask_runs_from_the_command_line(tiny_model_dir: Path, clips) -> None:
    """The installed console script streams a reply and exits 0."""
    exe = Path(sys.executable).with_name("voxtral-assistant")
    args = ["ask", str(clips["short"]), "--text", "Hi", "--model", str(tiny_model_dir)]
    proc = subprocess.run(
        [str(exe), *args, "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n")
