"""What the assistant says unprompted (a timer fired), held until it can join the history.

An announcement joins the history as an assistant message, so that a follow-up ("what was
that?") can be answered; it never splits a user input from its reply, so while a reply runs,
or input or a confirmation waits for one, it waits (bounded: the oldest is forgotten).
"""

from __future__ import annotations

import logging
from collections import deque

from mistral_common.protocol.instruct.messages import AssistantMessage

from assistant.conversation.history import History
from assistant.events import Announcement

log = logging.getLogger(__name__)

HELD_ANNOUNCEMENTS = 16
"""Announcements waiting for an open turn's reply; beyond that the oldest is forgotten."""


class HeldAnnouncements:
    """Announcements waiting for their place in one conversation's history."""

    def __init__(self, history: History, conversation_id: str) -> None:
        self._history = history
        self._conversation_id = conversation_id
        self._held: deque[str] = deque(maxlen=HELD_ANNOUNCEMENTS)

    def hold(self, announcement: Announcement | str) -> None:
        """Keep an announcement until ``commit``; ``ValueError`` when it says nothing."""
        text = announcement.text if isinstance(announcement, Announcement) else announcement
        if not text.strip():
            raise ValueError("an announcement needs text")
        if len(self._held) == HELD_ANNOUNCEMENTS:
            log.warning("%s: too many held announcements, forgot the oldest", self._conversation_id)
        self._held.append(text)

    def commit(self, confirmation_pending: bool) -> None:
        """Add the held announcements to the history, unless an input waits for its reply."""
        if confirmation_pending or not self._history.turns or self._history.awaiting_reply:
            return
        while self._held:
            self._history.add_replies([AssistantMessage(content=self._held.popleft())])
