"""The rules that keep a conversation's history valid: pure, synchronous, no model, no I/O.

The history is a list of turns. A turn is what the user said — one or more input items (audio
clips, typed text) in ONE user message, because two user messages in a row are merged — followed
by the assistant's replies: assistant messages, each tool call answered by exactly one tool
message, in call order. Every method leaves the history in a state that mistral-common accepts
as a chat request, so a request can be built from it at any moment.

A response under construction is a list of ``Round`` objects (one per model reply: its text,
its tool calls, their results); ``reply_messages`` turns them into messages, filling every
missing result with a "cancelled" one, so even an interrupted response commits validly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mistral_common.protocol.instruct.chunk import AudioChunk, TextChunk
from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage, UserMessage
from mistral_common.protocol.instruct.tool_calls import FunctionCall
from mistral_common.protocol.instruct.tool_calls import ToolCall as MistralToolCall

from assistant import events

Message = Any
"""A mistral-common message (``SystemMessage``, ``UserMessage``, ``AssistantMessage``, ...)."""

TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""What mistral-common accepts as a function name; a call named otherwise cannot be recorded."""


def cancelled_result(call: events.ToolCall, reason: str = "cancelled") -> events.ToolResult:
    """The result recorded for a call that never ran (interrupted, declined, over the limit)."""
    content = json.dumps({"error": "cancelled", "reason": reason}, ensure_ascii=False)
    return events.ToolResult(call.id, call.name, content, ok=False, error=f"cancelled: {reason}")


@dataclass
class UserItem:
    """One user input (an audio clip and/or typed text) inside a user turn."""

    item_id: str
    chunks: tuple[Any, ...]
    """mistral-common ``AudioChunk`` / ``TextChunk`` objects, in the order they were given."""
    audio_s: float = 0.0
    transcript: str | None = None
    """What the user said in the audio, once transcription mode has answered."""
    audio_dropped: bool = False
    """The context budget replaced the audio by its transcript."""

    @property
    def has_audio(self) -> bool:
        """True when the item holds a clip (dropped or not)."""
        return any(isinstance(c, AudioChunk) for c in self.chunks)

    def content(self) -> list[Any]:
        """The chunks the model sees: audio replaced by its transcript once dropped."""
        if not self.audio_dropped:
            return list(self.chunks)
        return [
            TextChunk(text=self.transcript or "") if isinstance(c, AudioChunk) else c
            for c in self.chunks
        ]


@dataclass
class Turn:
    """A user message (one or more merged items) and the assistant's replies to it."""

    items: list[UserItem]
    replies: list[Message] = field(default_factory=list)

    def messages(self) -> list[Message]:
        """The turn as mistral-common messages."""
        content = [chunk for item in self.items for chunk in item.content()]
        return [UserMessage(content=content), *self.replies]


@dataclass
class Round:
    """One model reply inside a response: its text, its tool calls, their results by call id."""

    text: str = ""
    calls: list[events.ToolCall] = field(default_factory=list)
    results: dict[str, events.ToolResult] = field(default_factory=dict)

    def ordered_results(self, reason: str = "cancelled") -> list[events.ToolResult]:
        """One result per call in call order; calls without a result count as cancelled."""
        return [self.results.get(c.id) or cancelled_result(c, reason) for c in self.calls]


def common_prefix(a: str, b: str) -> str:
    """The longest start that ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def delivered_rounds(rounds: Sequence[Round], delivered_text: str | None) -> list[Round]:
    """The rounds with their text cut to what reached the user.

    ``delivered_text`` is a prefix of the response's text as streamed (all rounds' text
    concatenated); ``None`` means everything was delivered. Tool calls are never cut: a call
    that was made stays in the history with its result.
    """
    if delivered_text is None:
        return list(rounds)
    remaining = delivered_text
    kept = []
    for r in rounds:
        text = common_prefix(r.text, remaining)
        remaining = remaining[len(text) :]
        kept.append(replace(r, text=text))
    return kept


def reply_messages(rounds: Sequence[Round], reason: str = "cancelled") -> list[Message]:
    """Assistant and tool messages for a response; empty rounds vanish, no call lacks a result."""
    messages: list[Message] = []
    for r in rounds:
        if not r.text and not r.calls:
            continue
        calls = [
            MistralToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments_json))
            for c in r.calls
        ]
        messages.append(AssistantMessage(content=r.text or None, tool_calls=calls or None))
        messages.extend(
            ToolMessage(content=res.content, tool_call_id=res.call_id, name=res.name)
            for res in r.ordered_results(reason)
        )
    return messages


def _check_replies(replies: Sequence[Message]) -> None:
    """Raise ``ValueError`` unless every tool call is answered once, right after its message."""
    open_ids: list[str] = []
    for message in replies:
        if isinstance(message, AssistantMessage):
            if open_ids:
                raise ValueError(f"tool calls {open_ids} have no result before the next reply")
            open_ids = [c.id for c in message.tool_calls or ()]
        elif isinstance(message, ToolMessage):
            if message.tool_call_id not in open_ids:
                raise ValueError(f"tool result {message.tool_call_id!r} answers no open call")
            open_ids.remove(message.tool_call_id)
        else:
            raise ValueError(f"a reply must be an assistant or tool message, not {message!r}")
    if open_ids:
        raise ValueError(f"tool calls {open_ids} have no result")


class History:
    """A conversation as turns of mistral-common messages, valid after every operation."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.dropped_turns = 0
        """How many of the oldest turns the context budget removed."""

    @property
    def messages(self) -> list[Message]:
        """The whole history as mistral-common messages (no instructions)."""
        return [m for turn in self.turns for m in turn.messages()]

    @property
    def awaiting_reply(self) -> bool:
        """True when the newest turn is user input that no reply has answered yet."""
        return bool(self.turns) and not self.turns[-1].replies

    def add_user(self, item: UserItem) -> None:
        """Append user input; it joins the previous user message if nothing answered that one."""
        if not item.chunks:
            raise ValueError("a user item needs audio or text")
        if self.awaiting_reply:
            self.turns[-1].items.append(item)
        else:
            self.turns.append(Turn(items=[item]))

    def add_replies(self, replies: Sequence[Message]) -> None:
        """Append a response's messages to the newest turn (all tool calls answered)."""
        if not replies:
            return
        if not self.turns:
            raise ValueError("a reply needs a user turn before it")
        _check_replies(replies)
        self.turns[-1].replies.extend(replies)

    def replace_replies(self, turn: Turn, start: int, end: int, replies: Sequence[Message]) -> bool:
        """Put ``replies`` in place of ``turn.replies[start:end]`` (one response's messages).

        Returns False, changing nothing, when the turn is no longer in the history.
        """
        if not any(t is turn for t in self.turns):
            return False
        updated = [*turn.replies[:start], *replies, *turn.replies[end:]]
        _check_replies(updated)
        turn.replies[:] = updated
        return True

    def remove_unanswered(self, item_ids: set[str]) -> bool:
        """Take the items ``item_ids`` out of the newest turn if no reply answered it yet (a turn
        left without items goes too); True when something was removed."""
        if not self.awaiting_reply:
            return False
        turn = self.turns[-1]
        kept = [i for i in turn.items if i.item_id not in item_ids]
        if len(kept) == len(turn.items):
            return False
        if kept:
            turn.items[:] = kept
        else:
            self.turns.pop()
        return True

    def item(self, item_id: str) -> UserItem | None:
        """The user item with this id, if it is still in the history."""
        for turn in self.turns:
            for item in turn.items:
                if item.item_id == item_id:
                    return item
        return None

    def clips(self, turns: Sequence[Turn] | None = None) -> int:
        """Audio clips the model sees in ``turns`` (default: all), dropped ones not counted."""
        return sum(
            1
            for turn in (self.turns if turns is None else turns)
            for item in turn.items
            for chunk in item.content()
            if isinstance(chunk, AudioChunk)
        )

    def fit(
        self,
        count_tokens: Callable[[list[Message]], int],
        limit_tokens: int,
        *,
        keep_transcripts: bool = True,
        max_clips: int | None = None,
    ) -> bool:
        """Shrink the history until ``count_tokens(messages) <= limit_tokens`` and it holds at
        most ``max_clips`` audio clips (None: any number; vLLM takes 5 per request).

        First, oldest first, the audio of older turns whose transcript is known is replaced by
        that transcript (when ``keep_transcripts``); then the oldest complete turns are dropped.
        The newest turn is never touched. Returns False, changing nothing, when even the newest
        turn alone is over a limit.
        """

        def fits() -> bool:
            if max_clips is not None and self.clips() > max_clips:
                return False
            return count_tokens(self.messages) <= limit_tokens

        if fits():
            return True
        newest = self.turns[-1:]
        if max_clips is not None and self.clips(newest) > max_clips:
            return False
        if count_tokens([m for turn in newest for m in turn.messages()]) > limit_tokens:
            return False  # dropping the older turns could not help: keep them
        if keep_transcripts:
            for turn in self.turns[:-1]:
                droppable = [
                    i
                    for i in turn.items
                    if i.has_audio and not i.audio_dropped and i.transcript is not None
                ]
                if not droppable:
                    continue
                for item in droppable:
                    item.audio_dropped = True
                if fits():
                    return True
        while not fits():
            self.turns.pop(0)
            self.dropped_turns += 1
        return True
