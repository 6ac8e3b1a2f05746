"""What a running tool may use: announcements, background tasks, the tools' thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from assistant.events import Announcement, ToolCall

log = logging.getLogger("assistant.tools")

T = TypeVar("T")

TOOL_THREADS = 8
"""Threads for sync handlers; a private pool, so hung tools never starve the rest of the process."""


class BackgroundTasks:
    """Named tasks that tools leave running (timers); cancelled when the registry closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task named ``name``; its failure is logged, never lost."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("background task %s failed: %s: %s", task.get_name(), type(exc).__name__, exc)

    def names(self) -> list[str]:
        """Names of the running tasks, sorted."""
        return sorted(t.get_name() for t in self._tasks if not t.done())

    def cancel(self, name: str) -> int:
        """Cancel every running task called ``name``; return how many."""
        hits = [t for t in self._tasks if t.get_name() == name and not t.done()]
        for task in hits:
            task.cancel()
        return len(hits)

    async def aclose(self) -> None:
        """Cancel all tasks and wait for them to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ToolContext:
    """Given to handlers with a parameter annotated ``ToolContext`` (hidden from the schema).

    Made by the registry on the event loop, for one call.
    """

    def __init__(
        self,
        call: ToolCall,
        *,
        announce: Callable[[Announcement], None],
        tasks: BackgroundTasks,
        executor: Callable[[], ThreadPoolExecutor],
        conversation_id: str | None = None,
    ) -> None:
        self.call = call
        """The call being served."""
        self.conversation_id = conversation_id
        """The conversation that made the call (None when run by hand): one registry serves
        every conversation of a server, so what a tool leaves behind (a timer) is kept per
        conversation, and its announcements go back to that conversation only."""
        self.tasks = tasks
        """Background tasks shared by all tools of the registry; name them with ``task_name``."""
        self._announce = announce
        self._executor = executor
        self._loop = asyncio.get_running_loop()

    def announce(self, text: str, source: str | None = None) -> None:
        """Queue ``text`` to be said to this call's conversation (``registry.announcements``).

        Safe from any thread: a sync tool runs in a worker thread, and the queue belongs to
        the event loop, so the announcement is handed over to the loop there. Text that is not
        a string, or has nothing to say, raises here, in the tool, whose result then tells.
        """
        if not isinstance(text, str):
            raise TypeError(f"announce() needs the text to say as a str, not {type(text).__name__}")
        if not text.strip():
            raise ValueError("announce() needs some text to say, not an empty or blank string")
        if source is not None and not isinstance(source, str):
            raise TypeError(f"announce() needs source as a str, not {type(source).__name__}")
        announcement = Announcement(
            text=text, source=source or self.call.name, conversation_id=self.conversation_id
        )
        if _running_loop() is self._loop:
            self._announce(announcement)
        else:
            self._loop.call_soon_threadsafe(self._announce, announcement)

    def task_name(self, name: str) -> str:
        """``name`` scoped to this call's conversation, for ``tasks.start`` / ``tasks.cancel``."""
        return name if self.conversation_id is None else f"{self.conversation_id}/{name}"

    async def run_sync(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking ``func`` in the tools' thread pool and await its result."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
        return await loop.run_in_executor(self._executor(), call)
