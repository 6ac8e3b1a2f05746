"""The network edge: one asyncio server for ``/v1/realtime`` (WebSocket) and plain HTTP.

``AssistantServer`` shares one ``ModelWorker`` (and one tool registry) among all connections;
each connection gets its own ``RealtimeSession`` over a fresh ``Dialogue``. One handler per
connection runs a receiver and a sender task; when either ends, the other is cancelled.
Every outgoing event goes through a per-connection ``SendQueue`` bounded in bytes: a client
that stops reading is disconnected instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from assistant.audio.vad import VadSegmenter
from assistant.config import Settings, TranscriptionSettings, VadSettings
from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import Announcement
from assistant.server.http_api import HttpApi
from assistant.server.http_edge import HttpConnection
from assistant.server.realtime.protocol import (
    ProtocolError,
    error_event,
    new_id,
    parse_client_event,
)
from assistant.server.realtime.session import RealtimeSession
from assistant.server.transcriptions import TranscriptionsEndpoint

if TYPE_CHECKING:
    from assistant.model.worker import ModelWorker
    from assistant.tools import ToolRegistry

log = logging.getLogger(__name__)


class ServeError(Exception):
    """The server cannot start; the message says why in one sentence."""


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what clients may make the server hold or do."""

    max_sessions: int = 16
    """Concurrent ``/v1/realtime`` connections; more are closed with 1013."""
    max_message_bytes: int = 4 * 2**20
    """Largest WebSocket message; a larger one closes the connection with 1009."""
    max_incoming_messages: int = 16
    """Messages websockets buffers before it stops reading the socket (back-pressure): with
    ``max_message_bytes`` this bounds a connection's unread input at 64 MiB."""
    max_buffered_audio_s: float = 300.0
    """Uncommitted input audio per connection (manual turn detection)."""
    max_unanswered_audio_s: float = 300.0
    """Committed input audio that may wait for a response, per connection; more is refused."""
    max_unanswered_text_chars: int = 100_000
    """Typed input text that may wait for a response, per connection; more is refused."""
    send_queue_max_bytes: int = 8 * 2**20
    """Outgoing events waiting for a slow client; beyond this it is disconnected (1008)."""
    idle_timeout_s: float = 600.0
    """A connection with no client message and no response for this long is closed."""
    max_request_body_bytes: int = 25 * 2**20
    """Largest ``POST /v1/respond`` body."""
    max_body_bytes_in_flight: int = 100 * 2**20
    """All POST bodies being received at once, by Content-Length; more get 503 (one always fits)."""
    request_timeout_s: float = 10.0
    """Deadline for a request head (and POST body) to arrive."""
    respond_timeout_s: float = 300.0
    """Longest ``POST /v1/respond`` turn."""
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0
    shutdown_grace_s: float = 10.0
    """On shutdown, running responses get this long to finish before they are cancelled."""


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


class _Connection:
    """One ``/v1/realtime`` client: receiver and sender tasks around a session."""

    def __init__(
        self,
        ws: ServerConnection,
        session_factory: Callable[[Callable[[dict[str, Any]], None]], RealtimeSession],
        limits: ServerLimits,
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


class AssistantServer:
    """The assistant on the network; use ``async with`` or ``start()`` / ``shutdown()``."""

    def __init__(
        self,
        worker: ModelWorker,
        *,
        tools: ToolRegistry | None = None,
        model_name: str = "voxtral",
        host: str = "127.0.0.1",
        port: int = 8000,
        token: str | None = None,
        allowed_origins: tuple[str, ...] = (),
        limits: ServerLimits | None = None,
        dialogue_settings: DialogueSettings | None = None,
        vad_settings: VadSettings | None = None,
        transcription_settings: TranscriptionSettings | None = None,
    ) -> None:
        self.worker = worker
        self.tools = tools
        self.model_name = model_name
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self._dialogue_settings = dialogue_settings or DialogueSettings()
        self._vad_settings = vad_settings or VadSettings()
        self._transcription_settings = transcription_settings or TranscriptionSettings()
        self._connections: set[_Connection] = set()
        self._server: Server | None = None
        self._started_s = time.monotonic()
        self._announcer: asyncio.Task[None] | None = None
        self.slow_clients_disconnected = 0
        self.http = HttpApi(
            token=token,
            allowed_origins=allowed_origins,
            health=self.health,
            new_dialogue=self._new_dialogue,
            respond_timeout_s=self.limits.respond_timeout_s,
            max_body_bytes_in_flight=self.limits.max_body_bytes_in_flight,
            transcriptions=TranscriptionsEndpoint(
                worker, self._transcription_settings, self._vad_settings
            ),
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; ``self.port`` is the real port afterwards (useful with port 0).

        ``ServeError`` when the address cannot be bound (in use, not this machine's).
        """
        if self._vad_settings.backend == "silero":
            # Silero's first load (import, TorchScript) takes over a second: pay it now, in a
            # thread, rather than in the first session's audio.
            await asyncio.to_thread(VadSegmenter, self._vad_settings)
        try:
            self._server = await self._listen()
        except OSError as exc:
            raise ServeError(listen_failure(self.host, self.port, exc)) from None
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        if self.tools is not None:
            self._announcer = asyncio.create_task(
                self._announce(self.tools.announcements), name="server-announcements"
            )
        log.info("serving on http://%s:%d (WebSocket /v1/realtime)", self.host, self.port)

    async def _listen(self) -> Server:
        limits = self.limits

        class _Conn(HttpConnection):
            max_body_bytes = limits.max_request_body_bytes
            request_timeout_s = limits.request_timeout_s

        return await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self.http.process_request,
            create_connection=_Conn,
            subprotocols=["realtime"],  # type: ignore[list-item]
            select_subprotocol=_select_realtime,
            compression=None,
            max_size=limits.max_message_bytes,
            max_queue=limits.max_incoming_messages,
            ping_interval=limits.ping_interval_s,
            ping_timeout=limits.ping_timeout_s,
            close_timeout=limits.close_timeout_s,
            # The request deadline is HttpConnection's; this one also covers POST turns and
            # transcriptions.
            open_timeout=limits.request_timeout_s
            + max(limits.respond_timeout_s, self._transcription_settings.timeout_s),
        )

    async def shutdown(self) -> None:
        """Stop accepting, let turns finish (or cancel them), close clients with 1001."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(close_connections=False)
        if self._announcer is not None:
            self._announcer.cancel()
        grace_s = self.limits.shutdown_grace_s
        await asyncio.gather(
            self.http.shutdown(grace_s),
            *(
                conn.stop(CloseCode.GOING_AWAY, "server shutting down", grace_s)
                for conn in list(self._connections)
            ),
        )
        await server.wait_closed()

    async def __aenter__(self) -> AssistantServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # --- connections -----------------------------------------------------------------------

    def _new_dialogue(self) -> Dialogue:
        settings = dataclasses.replace(self._dialogue_settings)
        # The wire's session id doubles as the conversation id: tool announcements find their
        # session by it, and the logs of both layers name the same thing.
        return Dialogue(self.worker, self.tools, settings, conversation_id=new_id("sess"))

    def _new_session(self, send: Callable[[dict[str, Any]], None]) -> RealtimeSession:
        return RealtimeSession(
            self._new_dialogue(),
            send,
            model_name=self.model_name,
            vad_settings=self._vad_settings,
            max_buffered_audio_s=self.limits.max_buffered_audio_s,
            max_unanswered_audio_s=self.limits.max_unanswered_audio_s,
            max_unanswered_text_chars=self.limits.max_unanswered_text_chars,
        )

    async def _handle(self, ws: ServerConnection) -> None:
        if self._server is None:
            await ws.close(CloseCode.GOING_AWAY, "server shutting down")
            return
        if len(self._connections) >= self.limits.max_sessions:
            await ws.close(
                CloseCode.TRY_AGAIN_LATER,
                f"server full: {len(self._connections)} sessions open; try again later",
            )
            return
        conn = _Connection(ws, self._new_session, self.limits, self._count_slow_client)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    async def _announce(self, announcements: asyncio.Queue[Announcement]) -> None:
        """Tools speaking up later (a timer ran out) reach the session whose call started them.

        An announcement without a conversation (a plugin's own background news) reaches every
        open session; one whose session has gone is dropped.
        """
        while True:
            announcement = await announcements.get()
            sessions = [
                conn.session
                for conn in list(self._connections)
                if announcement.conversation_id in (None, conn.session.id)
            ]
            log.info("announcement from %s to %d session(s)", announcement.source, len(sessions))
            for session in sessions:
                # One bad announcement (or one broken session) must not end this server-wide
                # loop: every later announcement, for every session, would go unheard.
                try:
                    session.announce(announcement)
                except ValueError as exc:
                    log.warning(
                        "%s: announcement from %s dropped: %s", session.id, announcement.source, exc
                    )
                except Exception:
                    log.exception(
                        "%s: announcement from %s failed", session.id, announcement.source
                    )

    def _count_slow_client(self) -> None:
        self.slow_clients_disconnected += 1

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` reports."""
        responding = sum(1 for c in self._connections if c.session.responding)
        return {
            "status": "ok" if self._server is not None else "stopping",
            "model": self.model_name,
            "model_loaded": True,
            "sessions": len(self._connections),
            "max_sessions": self.limits.max_sessions,
            "queue_depth": responding + self.http.turns_in_flight,
            "model_waiting": self.worker.waiting_requests,
            "slow_clients_disconnected": self.slow_clients_disconnected,
            "uptime_s": round(time.monotonic() - self._started_s, 1),
        }


def _select_realtime(connection: ServerConnection, offered: Any) -> Any:
    """Answer ``realtime`` when offered (browsers require an answer when they offer any)."""
    return "realtime" if "realtime" in offered else None


async def run_server(
    settings: Settings, *, max_buffered_audio_s: float = 300.0, idle_timeout_s: float = 600.0
) -> None:
    """Load the model and tools from ``settings``, then serve until SIGINT or SIGTERM.

    Raises ``ServeError`` (or ``ToolsFileError``) with one clear sentence when it cannot start;
    the address is checked before the model loads, which takes minutes for a real checkpoint.
    """
    from assistant.model.worker import GenerationParams, ModelWorker
    from assistant.tools import load_tools

    host, port = settings.server.host, settings.server.port
    await check_can_listen(host, port)
    model = settings.model
    tools = load_tools(settings.tools_file) if settings.tools_file else None
    try:
        try:
            worker = await asyncio.to_thread(ModelWorker.from_settings, model)
        except ValueError as exc:
            raise ServeError(str(exc)) from None
        token = settings.server.token.get_secret_value() if settings.server.token else None
        server = AssistantServer(
            worker,
            tools=tools,
            model_name=model.id,
            host=host,
            port=port,
            token=token,
            allowed_origins=tuple(settings.server.allowed_origins),
            limits=ServerLimits(
                max_sessions=settings.server.max_sessions,
                max_buffered_audio_s=max_buffered_audio_s,
                idle_timeout_s=idle_timeout_s,
            ),
            dialogue_settings=DialogueSettings(
                instructions=settings.instructions,
                params=GenerationParams.from_settings(model),
            ),
            vad_settings=settings.vad,
            transcription_settings=settings.transcription,
        )
        try:
            await serve_until_signalled(server)
        finally:
            await asyncio.to_thread(worker.close)
    finally:
        if tools is not None:
            await tools.aclose()


async def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` for a moment; ``ServeError`` saying why when that fails."""
    if port == 0:
        return
    try:
        probe = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port)
    except OSError as exc:
        raise ServeError(listen_failure(host, port, exc)) from None
    probe.close()
    await probe.wait_closed()


def listen_failure(host: str, port: int, error: OSError) -> str:
    """One sentence on why ``host:port`` cannot be bound."""
    reason = error.strerror or str(error)
    hint = " (is another server running there? pick another --port)" if port else ""
    return f"cannot listen on {host}:{port}: {reason}{hint}"


async def serve_until_signalled(server: AssistantServer) -> None:
    """Run ``server`` until SIGINT or SIGTERM, then shut it down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with server:
            await stop.wait()
            log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
