"""Spoken yes/no confirmation for ``confirm: true`` tools: the question, the answer's meaning,
and the reply held back until the user has answered (``ConfirmationGate``).

Only a clear yes runs the tool: a short answer (at most ``MAX_YES_WORDS`` words) that holds one
of the yes words or phrases and none of the words that negate or hedge. Anything else — "no",
silence, a new request, "yes but not now" — cancels the call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from assistant.config import DEFAULT_YES_WORDS
from assistant.conversation.history import History, Round, cancelled_result, reply_messages
from assistant.conversation.transcripts import UserTranscripts
from assistant.conversation.turn import ResponseState, ToolRunner
from assistant.events import ConfirmationRequested, ToolCall

log = logging.getLogger(__name__)

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


@dataclass(eq=False)
class _Pending:
    """A model reply whose ``confirm`` calls wait for the user's yes or no."""

    round: Round
    calls: list[ToolCall]


class ConfirmationGate:
    """Holds a reply with ``confirm`` calls back until the user's next turn answers it."""

    def __init__(
        self,
        history: History,
        runner: ToolRunner,
        transcripts: UserTranscripts,
        conversation_id: str,
    ) -> None:
        self._history = history
        self._runner = runner
        self._transcripts = transcripts
        self._conversation_id = conversation_id
        self._pending: _Pending | None = None

    @property
    def pending(self) -> bool:
        """True when the next user turn answers a ``confirm`` tool's question."""
        return self._pending is not None

    def ask(self, r: ResponseState, rnd: Round, calls: list[ToolCall]) -> None:
        """Hold the reply back until the user answers; ask about each ``confirm`` call."""
        r.rounds.remove(rnd)
        self._pending = _Pending(rnd, calls)
        for call in calls:
            prompt = confirmation_prompt(call, self._runner.description(call.name))
            r.emit(ConfirmationRequested(call, prompt))
            r.say(prompt if not r.spoken else f" {prompt}")

    async def resolve(
        self, r: ResponseState, yes_words: Iterable[str], language: str | None
    ) -> None:
        """The user's answer (this response's input) decides the pending calls; the reply
        then joins the history."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        answer = await self._transcripts.answer_text(r, language)
        yes = is_clear_yes(answer, yes_words)
        log.info("%s: confirmation answered %r (yes=%s)", self._conversation_id, answer, yes)
        rnd = pending.round
        for call in pending.calls:
            if yes:
                self._runner.run(r, rnd, call)
            else:
                r.record(rnd, cancelled_result(call, "the user did not confirm"))
        await self._runner.wait_started(r)
        self._history.add_replies(reply_messages([rnd], "interrupted"))
        if not yes and not is_clear_no(answer):
            # Not an answer at all but a new request: it is the user's next message.
            for entry in r.inputs:
                self._history.add_user(entry.item)
