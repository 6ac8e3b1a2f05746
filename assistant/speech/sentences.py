"""Streamed reply text cut into sentences the moment each is complete (pure, synchronous).

Speech then starts with the first sentence instead of waiting for the whole reply.
"""

from __future__ import annotations

import re

# Words that end with a full stop without ending the sentence.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "approx", "e.g", "i.e", "cf", "fig"}
)
_CLOSERS = "\"')]}»”’"
_END_MARKS = ".!?…"
# What may follow an end mark inside the same sentence: more marks, quotes, closing markup.
_TRAILERS = _END_MARKS + _CLOSERS + "*_`"
_MARKUP = re.compile(r"[*_#`~]+")
_SPACES = re.compile(r"\s+")


def speakable(text: str) -> str:
    """``text`` without Markdown markup and with runs of white space collapsed."""
    return _SPACES.sub(" ", _MARKUP.sub("", text)).strip()


def _ends_sentence(buffer: str, mark: int) -> bool:
    """Whether the end mark at ``buffer[mark]`` closes a sentence (not ``Dr.`` or ``J.``)."""
    if buffer[mark] != ".":
        return True
    word = buffer[:mark].rsplit(None, 1)[-1] if buffer[:mark].strip() else ""
    word = word.lstrip("(\"'«“‘")
    if word.lower() in _ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: "J. R. R. Tolkien"
    line_start = buffer.rfind("\n", 0, mark) + 1
    # A list marker ("1. Preheat the oven") opens a sentence rather than ending one.
    return not (word.isdigit() and not buffer[line_start:mark].strip().replace(word, "", 1))


class SentenceSplitter:
    """Cuts streamed text into complete sentences as soon as each one ends.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (plus closing quotes or brackets) followed by
    white space, or at a line break. A run longer than ``max_chars`` without an end is cut at its
    last comma or space, so a long sentence does not hold speech back.
    """

    def __init__(self, max_chars: int = 250) -> None:
        if max_chars < 10:
            raise ValueError(f"max_chars must be at least 10, not {max_chars}")
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the sentences it completed (cleaned for speech)."""
        self._buffer += text
        sentences: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            cleaned = speakable(piece)
            if cleaned:
                sentences.append(cleaned)
        return sentences

    def flush(self) -> list[str]:
        """The text left over at the end of the reply, as a last sentence (if it says anything)."""
        rest, self._buffer = speakable(self._buffer), ""
        return [rest] if rest else []

    def _next_cut(self) -> int | None:
        buffer = self._buffer
        for index, char in enumerate(buffer):
            if char == "\n":
                return index + 1
            if char not in _END_MARKS:
                continue
            after = index + 1
            while after < len(buffer) and buffer[after] in _TRAILERS:
                after += 1
            if after < len(buffer) and buffer[after].isspace() and _ends_sentence(buffer, index):
                return after
        if len(buffer) > self.max_chars:
            window = buffer[: self.max_chars]
            for separator in (", ", "; ", ": ", " "):
                position = window.rfind(separator)
                if position > 0:
                    return position + len(separator)
            return self.max_chars
        return None
