"""MicCapture.stop() is bounded even when PortAudio never lets go of a wedged device."""

from __future__ import annotations

import asyncio
import threading

from assistant.audio import capture
from assistant.audio.capture import MicCapture


class _WedgedStream:
    """A PortAudio stream whose abort() blocks until released, as on a stuck sound server."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def abort(self) -> None:
        self.release.wait(30)

    def close(self) -> None:
        self.closed.set()


async def test_stop_returns_and_iteration_ends_when_abort_hangs(monkeypatch) -> None:
    """A stream stuck in abort() costs CLOSE_TIMEOUT_S, then iteration ends; no thread leaks."""
    monkeypatch.setattr(capture, "CLOSE_TIMEOUT_S", 0.2)
    mic = MicCapture(stall_timeout_s=None)
    stream = _WedgedStream()
    mic._loop = asyncio.get_running_loop()
    mic._stream = stream
    mic._started = True
    await asyncio.wait_for(mic.stop(), 5)
    assert [frame async for frame in mic] == []
    stream.release.set()  # the sound server recovers: the stream is still closed
    assert await asyncio.to_thread(stream.closed.wait, 5)


async def test_stop_waits_for_a_stream_that_closes(monkeypatch) -> None:
    """A stream that aborts normally is closed before stop() returns."""
    mic = MicCapture(stall_timeout_s=None)
    stream = _WedgedStream()
    stream.release.set()
    mic._loop = asyncio.get_running_loop()
    mic._stream = stream
    mic._started = True
    await mic.stop()
    assert stream.closed.is_set()
