"""Streamed reply text cut into sentences the moment each is complete (pure, synchronous).

Speech then starts with the first sentence instead of waiting for the whole reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
_WORDS = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of streamed text: ``raw`` exactly as written, ``spoken`` what to say of it.

    ``spoken`` is empty when the stretch holds only markup or white space; the raw pieces of a
    text, joined, give the text back unchanged.
    """

    raw: str
    spoken: str


def speakable(text: str) -> str:
    """``text`` without Markdown markup and with runs of white space collapsed."""
    return _SPACES.sub(" ", _MARKUP.sub("", text)).strip()


def heard_prefix(text: str, share: float) -> str:
    """The start of ``text`` heard when ``share`` (0 to 1) of its speech was played.

    Speech is taken to run evenly over the words: the first ``round(words * share)`` words are
    counted as heard, and the prefix ends right after the last of them (white space and markup
    inside it kept as written).
    """
    words = list(_WORDS.finditer(text))
    count = round(len(words) * min(max(share, 0.0), 1.0))
    return text[: words[count - 1].end()] if count else ""


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
        return [piece.spoken for piece in self.feed_pieces(text) if piece.spoken]

    def flush(self) -> list[str]:
        """The text left over at the end of the reply, as a last sentence (if it says anything)."""
        return [piece.spoken for piece in self.flush_pieces() if piece.spoken]

    def feed_pieces(self, text: str) -> list[Piece]:
        """``feed``, keeping each sentence's raw text (and the stretches with nothing to say)."""
        self._buffer += text
        pieces: list[Piece] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                break
            raw, self._buffer = self._buffer[:cut], self._buffer[cut:]
            pieces.append(Piece(raw, speakable(raw)))
        return pieces

    def flush_pieces(self) -> list[Piece]:
        """``flush``, keeping the raw text of what was left over (even if it says nothing)."""
        raw, self._buffer = self._buffer, ""
        return [Piece(raw, speakable(raw))] if raw else []

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
