"""The Wyoming server: the ``wyoming`` library's ``AsyncServer`` for tcp:// and unix://, and
stdin/stdout for stdio://, each connection served by a ``WyomingHandler``.

Every connection's task is kept (the library's registry) and the number served at once is
bounded (``max_connections``; more wait for a free slot). Shutdown stops accepting, gives the
running requests ``shutdown_grace_s`` to finish, then cancels them and closes the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from wyoming.event import async_get_stdin
from wyoming.server import AsyncServer, AsyncTcpServer

from assistant.server.wyoming.framing import FrameLimits
from assistant.server.wyoming.handler import WyomingHandler
from assistant.server.wyoming.service import WyomingService

log = logging.getLogger(__name__)


class WyomingServeError(Exception):
    """The server cannot start; the message says why in one sentence."""


class WyomingServer:
    """Serves ``service`` at ``uri``; ``async with`` it, or ``start()`` / ``shutdown()``."""

    def __init__(
        self,
        service: WyomingService,
        uri: str,
        *,
        limits: FrameLimits | None = None,
        shutdown_grace_s: float = 5.0,
    ) -> None:
        self.service = service
        self.uri = uri
        self.limits = limits or FrameLimits()
        self.shutdown_grace_s = shutdown_grace_s
        self.port: int | None = None
        """The TCP port listened on (the real one when the uri asked for port 0)."""
        self._server: AsyncServer | None = None
        self._handlers: set[WyomingHandler] = set()
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(service.settings.max_connections)
        self._stdio_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen (tcp, unix) or start serving stdin/stdout (stdio)."""
        self.service.start()
        scheme = urlsplit(self.uri).scheme
        if scheme == "stdio":
            self._stdio_task = asyncio.create_task(self._serve_stdio(), name="wyoming-stdio")
            log.info("serving Wyoming on stdin/stdout")
            return
        server = AsyncServer.from_uri(self.uri)
        try:
            await server.start(self._new_handler)
        except OSError as exc:
            raise WyomingServeError(f"cannot listen on {self.uri}: {exc.strerror or exc}") from None
        self._server = server
        if isinstance(server, AsyncTcpServer):
            self.port = bound_port(server)
        log.info("serving Wyoming on %s", self.address)

    @property
    def address(self) -> str:
        """Where clients connect (with the real port)."""
        parsed = urlsplit(self.uri)
        if parsed.scheme == "tcp" and self.port is not None:
            return f"tcp://{parsed.hostname}:{self.port}"
        return self.uri

    async def wait_stdio_closed(self) -> None:
        """With stdio://, return when the client closes stdin; otherwise never."""
        if self._stdio_task is None:
            await asyncio.Event().wait()
        else:
            await asyncio.shield(self._stdio_task)

    async def shutdown(self) -> None:
        """Stop accepting; let running requests finish within the grace, then close all."""
        server, self._server = self._server, None
        if server is not None:
            inner = getattr(server, "_server", None)
            if inner is not None:
                inner.close()  # stop accepting while the running requests finish
        running = [h.job for h in self._handlers if h.job is not None and not h.job.done()]
        if running:
            await asyncio.wait(running, timeout=self.shutdown_grace_s)
        for handler in list(self._handlers):
            if handler.job is not None:
                handler.job.cancel()
        if server is not None:
            await server.stop()
        if self._connection_tasks:  # closed above: they end at once (bounded all the same)
            await asyncio.wait(set(self._connection_tasks), timeout=self.shutdown_grace_s)
        if self._stdio_task is not None:
            self._stdio_task.cancel()
            await asyncio.gather(self._stdio_task, return_exceptions=True)
        await self.service.aclose()

    async def __aenter__(self) -> WyomingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def _new_handler(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> WyomingHandler:
        handler = _Bounded(self, self.service, self.limits, reader, writer)
        return handler

    async def _serve_stdio(self) -> None:
        loop = asyncio.get_running_loop()
        reader = await async_get_stdin()
        transport, protocol = await loop.connect_write_pipe(
            partial(asyncio.streams.FlowControlMixin, loop=loop), sys.stdout.buffer
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        await self._new_handler(reader, writer).run()


class _Bounded(WyomingHandler):
    """A handler that holds one of the server's connection slots while it runs."""

    def __init__(
        self,
        server: WyomingServer,
        service: WyomingService,
        limits: FrameLimits,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(service, limits, reader, writer)
        self._owner = server

    async def run(self) -> None:
        """Wait for a free slot (bounded connections), then serve."""
        task = asyncio.current_task()
        if task is not None:
            self._owner._connection_tasks.add(task)
            task.add_done_callback(self._owner._connection_tasks.discard)
        async with self._owner._slots:
            self._owner._handlers.add(self)
            try:
                await super().run()
            except Exception:  # never "Task exception was never retrieved" in the library
                log.exception("a Wyoming connection failed")
            finally:
                self._owner._handlers.discard(self)
                with contextlib.suppress(Exception):
                    self.writer.close()


def bound_port(server: AsyncTcpServer) -> int:
    """The port a TCP server listens on (the library keeps its asyncio server private; port 0
    needs the real one)."""
    inner: asyncio.Server | None = getattr(server, "_server", None)
    if inner is None or not inner.sockets:
        return server.port
    return int(inner.sockets[0].getsockname()[1])
