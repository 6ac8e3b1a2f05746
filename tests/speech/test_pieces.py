"""Raw sentence pieces (for the history) and the words heard of a cut sentence."""

from __future__ import annotations

from assistant.speech.sentences import SentenceSplitter, heard_prefix

REPLY = "**Hello** there. How are you?\n\n- fine\n* ok *  "


def test_the_raw_pieces_join_back_to_the_streamed_text() -> None:
    """Fed a character at a time, the pieces' raw text (markup, blank lines) is the text."""
    splitter = SentenceSplitter()
    pieces = [piece for char in REPLY for piece in splitter.feed_pieces(char)]
    pieces += splitter.flush_pieces()
    assert "".join(piece.raw for piece in pieces) == REPLY


def test_each_piece_says_its_cleaned_sentence() -> None:
    """spoken is the sentence without markup; a blank line has nothing to say."""
    splitter = SentenceSplitter()
    pieces = splitter.feed_pieces(REPLY) + splitter.flush_pieces()
    assert [p.spoken for p in pieces] == ["Hello there.", "How are you?", "", "", "- fine", "ok"]


def test_half_of_a_sentence_heard_keeps_half_of_its_words() -> None:
    """Half the speech of ten words: the first five, ending right after the fifth."""
    text = " one two three four five six seven eight nine ten."
    assert heard_prefix(text, 0.5) == " one two three four five"


def test_nothing_heard_keeps_nothing_and_all_heard_keeps_all() -> None:
    """Shares of 0 and 1 (and beyond) give the empty text and the whole text."""
    assert heard_prefix("**Hi** there.", 0.0) == ""
    assert heard_prefix("**Hi** there.", 1.0) == "**Hi** there."
    assert heard_prefix("**Hi** there.", 1.7) == "**Hi** there."
