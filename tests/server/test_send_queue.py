"""The per-connection send queue: bounded in UTF-8 bytes, never blocking, closed on overflow."""

from __future__ import annotations

from assistant.server.send_queue import SendQueue


async def test_frames_come_out_in_order_then_none_after_close() -> None:
    """Queued frames are drained in order; after close() the queue ends with None."""
    queue = SendQueue(max_bytes=100)
    queue.put(b"one")
    queue.put(b"two")
    queue.close()
    assert [await queue.get(), await queue.get(), await queue.get()] == [b"one", b"two", None]


async def test_the_bound_counts_utf8_bytes_not_characters() -> None:
    """Six characters of 'é' are 12 bytes: over a 10-byte bound they overflow the queue."""
    queue = SendQueue(max_bytes=10)
    queue.put("éééééé".encode())
    assert queue.overflowed.is_set()
    assert await queue.get() is None
