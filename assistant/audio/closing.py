"""Closing a PortAudio stream without letting a wedged sound server hang the program.

PortAudio's abort and close wait for the sound server; a stuck one (PulseAudio on a starved
machine) may never answer, and so may a write or a stop in the middle of playing.
``in_daemon_thread`` runs such a call in a daemon thread of its own — not the loop's executor,
whose threads ``asyncio.run`` joins at the end — and ``wait_bounded`` / ``close_bounded`` wait
for it at most ``timeout_s``: past that they log a warning and leave the stream behind, so the
event loop and the process still shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def in_daemon_thread(function: Callable[[], T], *, name: str) -> asyncio.Future[T]:
    """Run blocking ``function`` in a daemon thread of its own; the returned future gets its
    result or exception.

    Not the loop's executor: ``asyncio.run`` joins the executor's threads when it ends, so one
    stuck in a wedged sound server (or a long model load abandoned on Ctrl-C) would keep the
    process from exiting; a daemon thread is left behind instead. Must be called from the loop.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # nobody waits any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with an error

    def run() -> None:
        try:
            result, error = function(), None
        except BaseException as exc:  # handed to the awaiting coroutine, which re-raises it
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


async def close_bounded(close: Callable[[], None], what: str, timeout_s: float) -> bool:
    """Run ``close`` (blocking) in a daemon thread; wait for it at most ``timeout_s``.

    ``what`` names the device in the log ("the microphone"). Returns False when it did not
    finish in time (it may still finish later); an exception from ``close`` is logged.
    """
    return await wait_bounded(in_daemon_thread(close, name="portaudio-close"), what, timeout_s)


async def wait_bounded(
    done: asyncio.Future[Any], what: str, timeout_s: float, *, doing: str = "close"
) -> bool:
    """Wait at most ``timeout_s`` for ``done`` (a device being closed or stopped, from
    ``in_daemon_thread``); past that, log that ``what`` did not ``doing`` and is left behind,
    and return False. An exception from it is logged (a device already gone: nothing to do)."""
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except TimeoutError:
        log.warning(
            "%s did not %s within %g s (the sound server is stuck); leaving it behind",
            what,
            doing,
            timeout_s,
        )
        return False
    except Exception as exc:
        log.debug("%s: %s failed: %s", what, doing, exc)
    return True
