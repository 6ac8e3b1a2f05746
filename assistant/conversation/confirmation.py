"""Spoken yes/no confirmation for ``confirm: true`` tools: the question and the answer's meaning.

Only a clear yes runs the tool: a short answer (at most ``MAX_YES_WORDS`` words) that holds one
of the yes words or phrases and none of the words that negate or hedge. Anything else — "no",
silence, a new request, "yes but not now" — cancels the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from assistant.events import ToolCall

DEFAULT_YES_WORDS: tuple[str, ...] = (
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "ok",
    "okay",
    "confirm",
    "confirmed",
    "correct",
    "affirmative",
    "go ahead",
    "do it",
    "please do",
)
"""Words and phrases that count as yes (compared word by word, case-insensitively)."""

NEGATING_WORDS = frozenset(
    {"no", "not", "nope", "don't", "dont", "never", "cancel", "stop", "wait", "but", "instead"}
)
"""Words that turn an answer into anything but a clear yes."""

MAX_YES_WORDS = 6
"""Longer answers are a new request, not a confirmation."""

_WORD = re.compile(r"[\w']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def is_clear_yes(answer: str, yes_words: Iterable[str] = DEFAULT_YES_WORDS) -> bool:
    """True when ``answer`` clearly says yes (see the module docstring)."""
    words = _words(answer)
    if not words or len(words) > MAX_YES_WORDS or NEGATING_WORDS.intersection(words):
        return False
    for phrase in yes_words:
        wanted = _words(phrase)
        if wanted and any(
            words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1)
        ):
            return True
    return False


def is_clear_no(answer: str) -> bool:
    """True when ``answer`` is a short refusal ("no", "no thanks", "cancel that")."""
    words = _words(answer)
    return 0 < len(words) <= MAX_YES_WORDS and bool(NEGATING_WORDS.intersection(words[:2]))


def _describe_arguments(call: ToolCall) -> str:
    parts = [f"{name} {value}" for name, value in call.arguments.items()]
    return ", ".join(parts)


def confirmation_prompt(call: ToolCall, description: str = "") -> str:
    """The question put to the user, e.g. "Unlock the door (door front)? Say yes or no."."""
    first_sentence = description.strip().split(". ")[0].rstrip(".")
    what = first_sentence or call.name.replace("_", " ")
    arguments = _describe_arguments(call)
    if arguments:
        what = f"{what} ({arguments})"
    return f"{what}? Say yes or no."
