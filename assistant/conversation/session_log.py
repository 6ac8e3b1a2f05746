"""An append-only JSONL record of a conversation, one line per completed turn.

Each line is written whole, flushed and ``fsync``-ed once the turn's transcripts are in (after
its ``TurnDone``, which does not wait for them; ``Dialogue.drain`` does), so a killed process
loses at most the turns still being answered or transcribed. Lines, in order of appearance:

- ``{"type": "session", "conversation_id", "at"}`` each time a process opens the log;
- ``{"type": "turn", "conversation_id", "turn", "at", "user", "assistant", "finish_reason",
  "tool_calls", "tool_results", "metrics"}`` per turn. ``user`` lists the inputs the turn
  answered: ``{"item_id", "text", "audio_s", "audio_file", "transcript"}``; ``audio_file`` is
  a WAV path relative to the log's folder when audio logging is on, else ``null``.

``read_session_log`` reads it back, skipping a torn last line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from assistant.events import SAMPLE_RATE_HZ, TurnDone


@dataclass(frozen=True, eq=False)
class LoggedInput:
    """One user input as the log records it."""

    item_id: str
    text: str | None = None
    """Typed text, if any."""
    audio: np.ndarray | None = None
    """The clip (float32 or int16, 16 kHz mono), saved as a WAV when audio logging is on."""
    audio_s: float = 0.0
    transcript: str | None = None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SessionLog:
    """Appends turns to a JSONL file; audio clips go to ``<log name>.audio/`` when enabled."""

    def __init__(self, path: Path, conversation_id: str, *, log_audio: bool = False) -> None:
        self.path = Path(path)
        self.conversation_id = conversation_id
        self.audio_dir = self.path.parent / f"{self.path.stem}.audio" if log_audio else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open("a", encoding="utf-8")
        self._write({"type": "session", "conversation_id": conversation_id, "at": _now_iso()})

    def write_turn(self, turn: int, inputs: list[LoggedInput], done: TurnDone) -> None:
        """Record one completed turn (blocking: run it in a thread from async code)."""
        record = {
            "type": "turn",
            "conversation_id": self.conversation_id,
            "turn": turn,
            "at": _now_iso(),
            "user": [self._input(item) for item in inputs],
            "assistant": done.text,
            "finish_reason": done.finish_reason,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in done.tool_calls
            ],
            "tool_results": [dataclasses.asdict(r) for r in done.tool_results],
            "metrics": dataclasses.asdict(done.metrics),
        }
        self._write(record)

    def close(self) -> None:
        """Close the file; later writes raise ``ValueError``."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _input(self, item: LoggedInput) -> dict[str, Any]:
        audio_file = None
        if self.audio_dir is not None and item.audio is not None:
            audio_file = self._save_audio(item, self.audio_dir)
        return {
            "item_id": item.item_id,
            "text": item.text,
            "audio_s": round(item.audio_s, 3),
            "audio_file": audio_file,
            "transcript": item.transcript,
        }

    def _save_audio(self, item: LoggedInput, folder: Path) -> str:
        import soundfile as sf

        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.conversation_id}-{item.item_id}.wav"
        with target.open("wb") as out:
            sf.write(out, item.audio, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
            out.flush()
            os.fsync(out.fileno())
        return str(target.relative_to(self.path.parent))

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise ValueError(f"the session log {self.path} is closed")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def read_session_log(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a session log; a torn last line (killed mid-write) is skipped."""
    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.endswith("\n") and number == len(lines):
            break
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from None
    return records
