"""What counts as a clear yes or no, and the question put to the user."""

from __future__ import annotations

import pytest

from assistant.conversation.confirmation import confirmation_prompt, is_clear_no, is_clear_yes
from assistant.events import ToolCall


@pytest.mark.parametrize("answer", ["Yes.", "yeah", "Okay, go ahead!", "Sure, do it", "YES PLEASE"])
def test_clear_yes(answer: str) -> None:
    """Short answers with a yes word and nothing negating are a yes."""
    assert is_clear_yes(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "no",
        "yes but not now",
        "don't",
        "wait",
        "what time is it",
        "yes I think you should open the door for the guests",
        "yesterday",
    ],
)
def test_anything_else_is_not_yes(answer: str) -> None:
    """Negations, hedges, long sentences, other words: not a yes."""
    assert not is_clear_yes(answer)


def test_custom_yes_words() -> None:
    """The yes words are configurable (e.g. another language)."""
    assert is_clear_yes("Oui, d'accord", ["oui"])
    assert not is_clear_yes("yes", ["oui"])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("No thanks", True), ("cancel it", True), ("turn on the light", False), ("", False)],
)
def test_clear_no(answer: str, expected: bool) -> None:
    """A short answer starting with a refusal is a clear no."""
    assert is_clear_no(answer) is expected


def test_prompt_uses_the_first_sentence_and_the_arguments() -> None:
    """The question names the action (first sentence of the description) and its arguments."""
    call = ToolCall("abcdefghi", "unlock_door", {"door": "front"})
    prompt = confirmation_prompt(call, "Unlock a door. Only when asked.")
    assert prompt == "Unlock a door (door front)? Say yes or no."
    assert confirmation_prompt(ToolCall("a", "unlock_door")) == "unlock door? Say yes or no."
