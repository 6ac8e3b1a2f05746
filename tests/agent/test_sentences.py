"""The sentence splitter hands speech each sentence as soon as the streamed reply completes it."""

from __future__ import annotations

import pytest

from assistant.speech.sentences import SentenceSplitter, speakable


def _stream(text: str, splitter: SentenceSplitter | None = None) -> list[str]:
    """Feed ``text`` one character at a time, as a model streams it; flush at the end."""
    splitter = splitter or SentenceSplitter()
    sentences = []
    for char in text:
        sentences += splitter.feed(char)
    return sentences + splitter.flush()


def test_a_sentence_is_released_as_soon_as_the_next_one_begins() -> None:
    """The first sentence comes out while the rest of the reply is still streaming."""
    splitter = SentenceSplitter()
    assert splitter.feed("The lights are on") == []
    assert splitter.feed(".") == []
    assert splitter.feed(" Anything") == ["The lights are on."]


def test_the_end_of_the_reply_flushes_the_last_sentence() -> None:
    """A last sentence without a trailing space is spoken when the reply ends."""
    assert _stream("Done. Anything else?") == ["Done.", "Anything else?"]


def test_question_and_exclamation_marks_end_sentences() -> None:
    """``!``, ``?`` and ``…`` end sentences, closing quotes included."""
    text = 'Wow! Really?! He said "stop." Then… nothing'
    assert _stream(text) == ["Wow!", "Really?!", 'He said "stop."', "Then…", "nothing"]


@pytest.mark.parametrize(
    "text",
    [
        "It is 3.5 degrees outside.",
        "Dr. Smith lives on St. James Street.",
        "J. R. R. Tolkien wrote it.",
        "Bring fruit, e.g. apples.",
    ],
)
def test_decimals_abbreviations_and_initials_do_not_end_a_sentence(text: str) -> None:
    """Full stops inside numbers, after abbreviations and after initials do not cut."""
    assert _stream(text) == [text]


def test_numbered_list_items_stay_whole() -> None:
    """A list marker ``1.`` at a line start opens its sentence instead of ending one."""
    assert _stream("Steps:\n1. Preheat the oven.\n2. Bake it.") == [
        "Steps:",
        "1. Preheat the oven.",
        "2. Bake it.",
    ]


def test_a_long_run_without_an_end_is_cut_at_a_comma() -> None:
    """Past ``max_chars`` the text is cut at its last comma so that speech can start."""
    splitter = SentenceSplitter(max_chars=40)
    text = "first part of a long answer, second part of it, and so on and on"
    first, *rest = _stream(text, splitter)
    assert first == "first part of a long answer,"
    assert " ".join([first, *rest]) == text


def test_markdown_markup_is_not_spoken() -> None:
    """Emphasis, headings and code marks are removed; white space is collapsed."""
    assert speakable("## **Bold**  and `code`\n") == "Bold and code"
    assert _stream("**Done.** _Next_ step") == ["Done.", "Next step"]


def test_blank_pieces_are_dropped() -> None:
    """Empty lines and lone markup produce no sentence."""
    assert _stream("\n\n**\n  \n") == []


def test_max_chars_must_leave_room_for_a_sentence() -> None:
    """A tiny ``max_chars`` is refused with a clear error."""
    with pytest.raises(ValueError, match="max_chars"):
        SentenceSplitter(max_chars=3)
