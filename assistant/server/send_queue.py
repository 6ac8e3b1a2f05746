"""One connection's outgoing frames, bounded in bytes: a client that stops reading is
disconnected instead of growing the server's memory."""

from __future__ import annotations

import asyncio
from collections import deque


class SendQueue:
    """Outgoing text frames (UTF-8) of one connection, bounded in bytes; overflow never blocks."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self.overflowed = asyncio.Event()
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, frame: bytes) -> None:
        """Queue a frame, or flag an overflow (the connection is then closed)."""
        if self._closed:
            return
        if self.queued_bytes + len(frame) > self.max_bytes:
            self._closed = True
            self.overflowed.set()
            self._ready.set()
            return
        self._frames.append(frame)
        self.queued_bytes += len(frame)
        self._ready.set()

    def close(self) -> None:
        """No more frames: ``get`` drains what is queued, then returns None."""
        self._closed = True
        self._ready.set()

    async def get(self) -> bytes | None:
        """The next frame, or None once closed and drained (or overflowed)."""
        while not self._frames:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed.is_set():
            return None
        frame = self._frames.popleft()
        self.queued_bytes -= len(frame)
        return frame
