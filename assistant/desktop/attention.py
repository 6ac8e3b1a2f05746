"""When the desktop agent takes requests: always, or after its wake word and for a while after.

``Attention`` is the pure rule behind ``listen --wake-word``, on the stream's clock
(milliseconds of microphone audio), so that it is the same at any speed: the wake word opens a
window of ``follow_up_ms`` to start a request; while the agent hears, thinks or speaks the
window stays open; once it is idle again, another ``follow_up_ms`` are left for a follow-up,
then it waits for the wake word again.
"""

from __future__ import annotations


class Attention:
    """Asleep until ``wake``; awake while busy and ``follow_up_ms`` after."""

    def __init__(self, follow_up_ms: int) -> None:
        if follow_up_ms <= 0:
            raise ValueError(f"the follow-up window must be positive, not {follow_up_ms} ms")
        self.follow_up_ms = follow_up_ms
        self._until_ms: int | None = None

    def wake(self, now_ms: int) -> None:
        """The wake word was heard at ``now_ms``: a request may start within the window."""
        self._until_ms = now_ms + self.follow_up_ms

    def awake(self, now_ms: int, busy: bool) -> bool:
        """Whether requests are taken at ``now_ms``; ``busy``: hearing, thinking or speaking."""
        if self._until_ms is None:
            return False
        if busy:
            self._until_ms = max(self._until_ms, now_ms + self.follow_up_ms)
            return True
        if now_ms >= self._until_ms:
            self._until_ms = None
            return False
        return True
