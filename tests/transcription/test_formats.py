"""Transcript formats, written a segment at a time."""

from __future__ import annotations

import json

from assistant.events import TranscriptSegment
from assistant.transcription import CUT_OFF_MARK, SegmentWriter

SEGMENTS = [
    TranscriptSegment(0, 1_200, 9_500, "Hello there.", "en"),
    TranscriptSegment(1, 10_000, 3_725_040, "A long piece.", "en", cut="hard"),
    TranscriptSegment(2, 3_726_000, 3_730_000, "", "en", cut="end"),
]


def write(format: str, segments: list[TranscriptSegment]) -> str:
    writer = SegmentWriter(format)  # type: ignore[arg-type]
    parts = [writer.header(), *(writer.segment(s) for s in segments)]
    return "".join(parts) + writer.footer(language="en", duration_s=3731.5)


def test_srt_numbers_cues_with_comma_milliseconds() -> None:
    """SRT: numbered cues, HH:MM:SS,mmm times of the pieces, no cue for an empty piece."""
    assert write("srt", SEGMENTS) == (
        "1\n00:00:01,200 --> 00:00:09,500\nHello there.\n\n"
        "2\n00:00:10,000 --> 01:02:05,040\nA long piece.\n\n"
    )


def test_vtt_has_its_header_and_dot_milliseconds() -> None:
    """WebVTT: the WEBVTT header, then cues with HH:MM:SS.mmm times."""
    assert write("vtt", SEGMENTS) == (
        "WEBVTT\n\n"
        "00:00:01.200 --> 00:00:09.500\nHello there.\n\n"
        "00:00:10.000 --> 01:02:05.040\nA long piece.\n\n"
    )


def test_txt_is_one_line_per_piece_with_words() -> None:
    """txt: the text of each piece that has words, one per line."""
    assert write("txt", SEGMENTS) == "Hello there.\nA long piece.\n"


def test_json_written_piecewise_is_one_document() -> None:
    """json: the parts join into one document with segments, language, duration and text."""
    document = json.loads(write("json", SEGMENTS))
    assert [s["start_s"] for s in document["segments"]] == [1.2, 10.0, 3726.0]
    assert document["segments"][1]["cut"] == "hard"
    assert document["language"] == "en"
    assert document["duration_s"] == 3731.5
    assert document["text"] == "Hello there. A long piece."
    assert document["cut_off_segments"] == []


def test_json_without_segments_is_still_a_document() -> None:
    """A recording with no speech gives an empty segment list, not broken JSON."""
    assert json.loads(write("json", []))["segments"] == []


def test_a_piece_cut_off_at_the_token_limit_is_marked_in_every_format() -> None:
    """finish_reason length: the mark in txt, srt and vtt, and finish_reason in json."""
    cut_off = [TranscriptSegment(0, 0, 5_000, "and then the", "en", finish_reason="length")]
    for format in ("txt", "srt", "vtt"):
        assert f"and then the {CUT_OFF_MARK}" in write(format, cut_off)
    document = json.loads(write("json", cut_off))
    assert document["segments"][0]["finish_reason"] == "length"
    assert document["cut_off_segments"] == [0]
