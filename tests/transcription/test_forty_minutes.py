"""The issue's acceptance run: a 40-minute recording of real speech, end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.testing.speech import write_wav
from tests.transcription.recordings import recording

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_forty_minutes_are_transcribed_with_timestamps_and_nothing_cut_off(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    """`transcribe --format json` on 40 min of espeak-ng speech with pauses: every sentence
    lies in one segment of at most 30 s, in order, each with its own text, none cut off."""
    talk = recording(490, pauses_s=(0.6, 1.2, 0.8, 2.5))
    assert 39 * 60 < talk.duration_s < 42 * 60
    path = write_wav(str(tmp_path / "forty.wav"), talk.pcm)
    texts = [f"Piece {n} of the recording." for n in range(200)]
    forced = tmp_path / "forced.json"
    forced.write_text(json.dumps({"transcripts": [f"lang:en {t}" for t in texts]}), "utf-8")
    args = ["transcribe", path, "--model", str(tiny_model_dir), "--format", "json"]
    assert main([*args, "--batch-pieces", "16", "--forced-replies", str(forced)]) == 0
    document = json.loads(capsys.readouterr().out)
    segments = document["segments"]
    assert len(segments) > 80
    assert [s["text"] for s in segments] == texts[: len(segments)]
    assert all(0 < s["end_s"] - s["start_s"] <= 30.0 for s in segments)
    assert all(a["end_s"] <= b["start_s"] for a, b in itertools.pairwise(segments))
    for start_ms, end_ms in talk.spans_ms:
        assert any(
            s["start_s"] * 1000 <= start_ms and end_ms - 400 <= s["end_s"] * 1000 for s in segments
        ), (start_ms, end_ms)
    assert document["cut_off_segments"] == []
    assert document["language"] == "en"
    assert document["duration_s"] == pytest.approx(talk.duration_s, abs=0.01)
