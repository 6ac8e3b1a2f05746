"""Transcript formats, written a segment at a time: ``txt``, ``json``, ``srt``, ``vtt``.

A ``SegmentWriter`` turns segments into text as they arrive: ``header()`` first, then
``segment()`` for each, then ``footer()``; joined, the parts are the whole document (the JSON
document too: its ``segments`` list comes first, the totals after it). Timestamps are those of
the pieces (no word timestamps). A piece whose text reached the token limit carries
``CUT_OFF_MARK`` in every format, and ``finish_reason: "length"`` in JSON.
"""

from __future__ import annotations

import json
from typing import Literal

from assistant.events import TranscriptSegment

Format = Literal["txt", "json", "srt", "vtt"]
FORMATS: tuple[Format, ...] = ("txt", "json", "srt", "vtt")

CUT_OFF_MARK = "[cut off: this piece reached the token limit]"
"""Appended to the text of a piece that hit ``max_new_tokens`` before its end."""


def segment_text(segment: TranscriptSegment) -> str:
    """The segment's text, with ``CUT_OFF_MARK`` when it was cut off."""
    if segment.finish_reason == "length":
        return f"{segment.text} {CUT_OFF_MARK}".strip()
    return segment.text


def full_text(segments: list[TranscriptSegment]) -> str:
    """The whole transcript as one paragraph."""
    return " ".join(text for text in (segment_text(s) for s in segments) if text)


def timestamp(ms: int, separator: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``separator`` ``,`` for SRT)."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def segment_json(segment: TranscriptSegment) -> dict[str, object]:
    """One segment as the JSON format lists it."""
    return {
        "id": segment.index,
        "start_s": segment.start_ms / 1000,
        "end_s": segment.end_ms / 1000,
        "text": segment_text(segment),
        "language": segment.language,
        "cut": segment.cut,
        "finish_reason": segment.finish_reason,
    }


class SegmentWriter:
    """Writes one transcript in ``format``, a segment at a time."""

    def __init__(self, format: Format) -> None:
        self.format = format
        self._cues = 0
        self._segments: list[TranscriptSegment] = []

    def header(self) -> str:
        """What comes before the first segment."""
        return {"txt": "", "json": '{"segments": [', "srt": "", "vtt": "WEBVTT\n\n"}[self.format]

    def segment(self, segment: TranscriptSegment) -> str:
        """The text of one more segment (empty for a piece with no words in ``txt``/``srt``/
        ``vtt``: a subtitle cue needs text)."""
        first = not self._segments
        self._segments.append(segment)
        text = segment_text(segment)
        if self.format == "json":
            line = json.dumps(segment_json(segment), ensure_ascii=False)
            return ("\n  " if first else ",\n  ") + line
        if not text:
            return ""
        if self.format == "txt":
            return text + "\n"
        self._cues += 1
        if self.format == "srt":
            span = f"{timestamp(segment.start_ms, ',')} --> {timestamp(segment.end_ms, ',')}"
            return f"{self._cues}\n{span}\n{text}\n\n"
        return f"{timestamp(segment.start_ms)} --> {timestamp(segment.end_ms)}\n{text}\n\n"

    def footer(self, *, language: str | None, duration_s: float) -> str:
        """What comes after the last segment: the totals, in JSON."""
        if self.format != "json":
            return ""
        totals = {
            "language": language,
            "duration_s": round(duration_s, 3),
            "text": full_text(self._segments),
            "cut_off_segments": [s.index for s in self._segments if s.finish_reason == "length"],
        }
        body = json.dumps(totals, ensure_ascii=False)[1:]  # the totals join the open object
        return ("\n], " if self._segments else "], ") + body + "\n"
