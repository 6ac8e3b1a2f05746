"""Conversation lines in the conversation's order, although the user's words come last.

A reply starts before the user's clip is transcribed (transcripts are off its critical path), so
the ``you:`` line's text arrives after the reply's. ``HeldLines`` keeps the order anyway: a
display reserves the user's line when the clip joins the conversation, every later line waits
behind that place, and when the transcript fills it the lines are released in order. Pure: no
I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

Line = TypeVar("Line")


@dataclass
class _Place(Generic[Line]):
    key: str | None
    line: Line | None


class HeldLines(Generic[Line]):
    """Lines waiting behind a reserved place; each call returns the lines now ready, in order."""

    def __init__(self) -> None:
        self._places: list[_Place[Line]] = []

    @property
    def holding(self) -> bool:
        """Whether some line waits for a reserved place to be filled."""
        return bool(self._places)

    def reserve(self, key: str) -> list[Line]:
        """Hold a place for the line ``key`` (filled later); later lines wait behind it."""
        self._places.append(_Place(key, None))
        return []

    def add(self, line: Line) -> list[Line]:
        """A finished line, after everything so far."""
        self._places.append(_Place(None, line))
        return self._ready()

    def fill(self, key: str, line: Line) -> list[Line]:
        """Put ``line`` in the place reserved for ``key`` (after everything if none was)."""
        for place in self._places:
            if place.key == key and place.line is None:
                place.line = line
                return self._ready()
        return self.add(line)

    def pending(self, placeholder: Line) -> list[Line]:
        """Every held line in order, ``placeholder`` in the places still empty (to show them
        while they wait)."""
        return [placeholder if p.line is None else p.line for p in self._places]

    def release(self, placeholder: Line) -> list[Line]:
        """Give up waiting: every held line, ``placeholder`` in the empty places."""
        lines = self.pending(placeholder)
        self._places.clear()
        return lines

    def _ready(self) -> list[Line]:
        ready: list[Line] = []
        while self._places and self._places[0].line is not None:
            line = self._places.pop(0).line
            if line is not None:
                ready.append(line)
        return ready
