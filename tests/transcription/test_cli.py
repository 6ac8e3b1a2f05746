"""The transcribe and ask commands over long recordings, on the tiny model."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.cli import main
from assistant.testing.speech import write_wav
from tests.transcription.recordings import recording

TEXTS = [f"Sentence number {n}." for n in range(8)]


@pytest.fixture(scope="module")
def talk_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight sentences with one-second pauses, as a WAV file (about 38 s)."""
    return Path(write_wav(str(tmp_path_factory.mktemp("cli") / "talk.wav"), recording(8).pcm))


@pytest.fixture
def forced(tmp_path: Path) -> Path:
    """A forced-replies file: one transcript per sentence."""
    path = tmp_path / "forced.json"
    path.write_text(json.dumps({"transcripts": [f"lang:en {t}" for t in TEXTS]}), "utf-8")
    return path


def transcribe_args(talk: Path, model: Path, forced: Path, *more: str) -> list[str]:
    common = ["transcribe", str(talk), "--model", str(model), "--forced-replies", str(forced)]
    return [*common, "--max-piece-s", "5", *more]


def test_srt_has_a_cue_per_piece_in_order(talk_file, tiny_model_dir, forced, capsys) -> None:
    """--format srt prints numbered cues with the pieces' times and texts, in order."""
    assert main(transcribe_args(talk_file, tiny_model_dir, forced, "--format", "srt")) == 0
    cues = capsys.readouterr().out.strip().split("\n\n")
    assert [cue.splitlines()[2] for cue in cues] == TEXTS
    assert cues[0].splitlines()[1].startswith("00:00:00,")


def test_json_reports_segments_and_the_detected_language(
    talk_file, tiny_model_dir, forced, capsys
) -> None:
    """--format json: segments with start/end and language; the file's language at the end."""
    assert main(transcribe_args(talk_file, tiny_model_dir, forced, "--format", "json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["text"] for s in document["segments"]] == TEXTS
    assert all(s["end_s"] - s["start_s"] <= 5.0 for s in document["segments"])
    assert document["language"] == "en"
    assert document["duration_s"] == pytest.approx(38.0, abs=2.0)


def test_txt_reports_the_detected_language_on_stderr(
    talk_file, tiny_model_dir, forced, capsys
) -> None:
    """Without --language, the language of most speech goes to stderr, the text to stdout."""
    assert main(transcribe_args(talk_file, tiny_model_dir, forced)) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == TEXTS
    assert "language: en (detected)" in out.err


def test_text_cut_off_at_the_limit_is_marked_and_warned(
    talk_file, tiny_model_dir, tmp_path, capsys
) -> None:
    """A piece over --max-new-tokens carries the mark and stderr warns about it."""
    forced = tmp_path / "long.json"
    forced.write_text(json.dumps({"transcripts": ["word " * 50, *TEXTS[1:]]}), "utf-8")
    args = transcribe_args(talk_file, tiny_model_dir, forced, "--max-new-tokens", "30")
    assert main([*args, "--language", "en"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0].endswith("[cut off: this piece reached the token limit]")
    assert "1 of 8 pieces reached the 30-token limit" in out.err


def test_a_recording_without_speech_says_so(tiny_model_dir, tmp_path, capsys) -> None:
    """Silence: no output lines and one line on stderr."""
    path = write_wav(str(tmp_path / "quiet.wav"), np.zeros(16000 * 20, dtype=np.int16))
    assert main(["transcribe", path, "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert "no speech found" in out.err


@pytest.mark.slow
def test_a_progress_bar_shows_on_a_terminal(talk_file, tiny_model_dir, forced) -> None:
    """With stderr on a terminal, the progress bar shows how much audio is transcribed."""
    exe = Path(sys.executable).with_name("voxtral-assistant")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(exe), "-q", *transcribe_args(talk_file, tiny_model_dir, forced)],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"},
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        screen += data
    stdout = proc.communicate(timeout=120)[0].decode()
    os.close(controller)
    assert proc.returncode == 0
    assert stdout.splitlines() == TEXTS  # the file output holds no bar
    assert b"transcribing" in screen
    assert b"0:38 / 0:38 of the audio" in screen or b"0:37 / 0:37 of the audio" in screen


def long_silence(path: Path, minutes: float) -> Path:
    """A long 8 kHz 8-bit WAV (small on disk): only its header is read before the model."""
    sf.write(path, np.zeros(int(minutes * 60 * 8000), dtype=np.int16), 8000, subtype="PCM_U8")
    return path


def test_ask_refuses_audio_beyond_any_context_before_loading(tmp_path, capsys) -> None:
    """45 minutes of audio: refused with the longest that fits, before any model loads."""
    clip = long_silence(tmp_path / "meeting.wav", 45)
    args = ["ask", str(clip), "--text", "Summary?", "--model", str(tmp_path / "no-model")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "45:00 of audio takes 33,751 tokens" in err
    assert "at most 43:00 of audio fits" in err
    assert "voxtral-assistant transcribe" in err


def test_ask_refuses_audio_beyond_the_models_context(tiny_model_dir, tmp_path, capsys) -> None:
    """Audio that fits 32k tokens but not the loaded model's context is refused before the
    clip is read or encoded."""
    small = tmp_path / "small-context"
    shutil.copytree(tiny_model_dir, small)
    config = json.loads((small / "config.json").read_text("utf-8"))
    config["text_config"]["max_position_embeddings"] = 4096
    (small / "config.json").write_text(json.dumps(config), "utf-8")
    clip = long_silence(tmp_path / "talk.wav", 5)
    assert main(["ask", str(clip), "--model", str(small)]) == 2
    assert "context holds 4,096 with 512 kept for the reply" in capsys.readouterr().err


def test_ask_takes_a_transcript_as_text(tiny_model_dir, tmp_path, capsys) -> None:
    """--text-file without audio: a question about a transcript, answered as text."""
    transcript = tmp_path / "transcript.txt"
    transcript.write_text("The committee approved the budget.", "utf-8")
    args = ["ask", "--text-file", str(transcript), "--text", "What happened?"]
    assert main([*args, "--model", str(tiny_model_dir), "--max-new-tokens", "3", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["usage"]["audio_tokens"] == 0
    assert done["usage"]["prompt_tokens"] > 10


def test_ask_says_when_the_reply_was_cut_off(tiny_model_dir, talk_file, capsys) -> None:
    """A reply that reaches --max-new-tokens is followed by a line saying so on stderr."""
    args = ["ask", str(talk_file), "--model", str(tiny_model_dir), "--max-new-tokens", "2"]
    assert main(args) == 0
    assert "the reply was cut off at 2 tokens" in capsys.readouterr().err
