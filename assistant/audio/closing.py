"""Closing a PortAudio stream without letting a wedged sound server hang the program.

PortAudio's abort and close wait for the sound server; a stuck one (PulseAudio on a starved
machine) may never answer. ``close_bounded`` runs the closing in a daemon thread of its own —
not the loop's executor, whose threads the interpreter joins at exit — and waits at most
``timeout_s``: past that it logs a warning and leaves the stream behind, so the event loop and
the process still shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


async def close_bounded(close: Callable[[], None], what: str, timeout_s: float) -> bool:
    """Run ``close`` (blocking) in a daemon thread; wait for it at most ``timeout_s``.

    ``what`` names the device in the log ("the microphone"). Returns False when it did not
    finish in time (it may still finish later); an exception from ``close`` is logged.
    """
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not closed.done():
            closed.set_result(None)

    def run() -> None:
        try:
            close()
        except Exception as exc:  # a device already gone: nothing more to do
            log.debug("closing %s failed: %s", what, exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name="portaudio-close", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(closed), timeout_s)
    except TimeoutError:
        log.warning(
            "%s did not close within %g s (the sound server is stuck); leaving it behind",
            what,
            timeout_s,
        )
        return False
    return True
