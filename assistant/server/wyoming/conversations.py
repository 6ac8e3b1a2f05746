"""Conversations across connections: Home Assistant opens a new connection for every turn and
names the conversation in ``context.conversation_id``; the dialogue behind it lives here.

``ConversationStore`` is bounded (``max_conversations``; the least recently used idle one is
forgotten to make room) and expiring (``idle_s`` without a turn). Pure bookkeeping with an
explicit clock; the caller closes what it hands back.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

D = TypeVar("D")


@dataclass
class Conversation(Generic[D]):
    """One conversation: its dialogue, a lock that runs its turns one at a time, last use."""

    key: str
    dialogue: D
    last_used_s: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turns: int = 0


class ConversationStore(Generic[D]):
    """Conversations by the client's id, least recently used first."""

    def __init__(self, max_conversations: int, idle_s: float) -> None:
        self.max_conversations = max_conversations
        self.idle_s = idle_s
        self._items: OrderedDict[str, Conversation[D]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(
        self, key: str, create: Callable[[], D], now_s: float
    ) -> tuple[Conversation[D], list[Conversation[D]]]:
        """The conversation ``key`` (created if new or expired) and the ones to close now.

        Closing: the expired ones, plus the least recently used idle ones beyond the bound.
        A conversation in the middle of a turn is never handed back for closing.
        """
        gone = self.expired(now_s)
        found = self._items.get(key)
        if found is None:
            found = Conversation(key, create(), now_s)
            self._items[key] = found
        found.last_used_s = now_s
        self._items.move_to_end(key)
        for other in list(self._items.values()):
            if len(self._items) <= self.max_conversations:
                break
            if other is not found and not other.lock.locked():
                del self._items[other.key]
                gone.append(other)
        return found, gone

    def expired(self, now_s: float) -> list[Conversation[D]]:
        """Remove and return the conversations idle for ``idle_s`` (and not in a turn)."""
        old = [
            c
            for c in self._items.values()
            if now_s - c.last_used_s >= self.idle_s and not c.lock.locked()
        ]
        for conversation in old:
            del self._items[conversation.key]
        return old

    def pop_all(self) -> list[Conversation[D]]:
        """Remove and return every conversation (shutdown)."""
        items = list(self._items.values())
        self._items.clear()
        return items
