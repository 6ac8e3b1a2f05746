"""One ``/v1/realtime`` client: a receiver and a sender task around a ``RealtimeSession``.

When either task ends (the client left, idled out, stopped reading, or the server stops), the
other is cancelled and the session is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from assistant.config import ServerSettings
from assistant.server.realtime.protocol import ProtocolError, error_event, parse_client_event
from assistant.server.realtime.session import RealtimeSession
from assistant.server.send_queue import SendQueue

log = logging.getLogger(__name__)


class RealtimeConnection:
    """One ``/v1/realtime`` client: receiver and sender tasks around a session."""

    def __init__(
        self,
        ws: ServerConnection,
        session_factory: Callable[[Callable[[dict[str, Any]], None]], RealtimeSession],
        limits: ServerSettings,
        on_slow_client: Callable[[], None],
    ) -> None:
        self.ws = ws
        self._on_slow_client = on_slow_client
        self.limits = limits
        self.outbox = SendQueue(limits.send_queue_max_bytes)
        self.session: RealtimeSession = session_factory(self.send_event)
        self._stopping = asyncio.Event()
        self._last_message_s = asyncio.get_running_loop().time()
        self.close_code = CloseCode.NORMAL_CLOSURE
        self.close_reason = ""

    def send_event(self, event: dict[str, Any]) -> None:
        """Queue one server event (never blocks; an overflow disconnects the client)."""
        frame = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        self.outbox.put(frame.encode())

    async def run(self) -> None:
        """Serve the client until it leaves, idles out, stops reading, or the server stops."""
        name = self.session.id
        self.session.start()
        tasks = {
            asyncio.create_task(self._receive(), name=f"{name}:receive"),
            asyncio.create_task(self._transmit(), name=f"{name}:send"),
            asyncio.create_task(self.outbox.overflowed.wait(), name=f"{name}:overflow"),
            asyncio.create_task(self._stopping.wait(), name=f"{name}:stop"),
            asyncio.create_task(self._watch_idle(), name=f"{name}:idle"),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.outbox.close()
        if self.outbox.overflowed.is_set():
            log.warning("%s: client is not reading; disconnecting", name)
            self._on_slow_client()
            self.close_code = CloseCode.POLICY_VIOLATION
            self.close_reason = (
                f"client is not reading: over {self.limits.send_queue_max_bytes} bytes queued"
            )
        await self.session.close()
        await self.ws.close(self.close_code, self.close_reason)

    async def stop(self, code: CloseCode, reason: str, grace_s: float) -> None:
        """Finish (or cancel) the running response, flush the events, then close."""
        await self.session.finish(grace_s)
        self.close_code, self.close_reason = code, reason
        self.outbox.close()
        # A client that does not read cannot hold up the shutdown.
        asyncio.get_running_loop().call_later(self.limits.close_timeout_s, self._stopping.set)

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await self.ws.recv()
            except ConnectionClosed:
                return
            self._last_message_s = loop.time()
            try:
                await self.session.handle(parse_client_event(message))
            except ProtocolError as exc:
                self.send_event(error_event(exc))
            except Exception:
                # A bug must not end the conversation silently: the client hears about it.
                log.exception("%s: handling a client event failed", self.session.id)
                self.send_event(
                    error_event(
                        ProtocolError(
                            "server_error",
                            "the server failed to handle this event; see its log",
                            error_type="server_error",
                        )
                    )
                )

    async def _watch_idle(self) -> None:
        """Return once no client message arrived for ``idle_timeout_s`` and nothing runs."""
        loop = asyncio.get_running_loop()
        limit_s = self.limits.idle_timeout_s
        while True:
            quiet_s = loop.time() - self._last_message_s
            if quiet_s >= limit_s and not self.session.responding:
                self.close_reason = f"idle for {limit_s:g} s"
                return
            await asyncio.sleep(max(limit_s - quiet_s, 0.05))

    async def _transmit(self) -> None:
        while (frame := await self.outbox.get()) is not None:
            try:
                await self.ws.send(frame, text=True)
            except ConnectionClosed:
                return
