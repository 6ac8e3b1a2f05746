"""The network edge: one asyncio server for ``/v1/realtime`` (WebSocket) and plain HTTP.

``AssistantServer`` shares one model backend (and one tool registry) among all connections;
each connection (``RealtimeConnection``) gets its own ``RealtimeSession`` over a fresh
``Dialogue``; plain HTTP requests go to ``HttpApi`` (the OpenAI-compatible API to
``OpenAiApi``). It owns the listening socket, the
connection registry, tool announcements and the graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import CloseCode

from assistant.audio.vad import VadSegmenter
from assistant.config import (
    DialogueSettings,
    GenerationParams,
    ServerSettings,
    SpeechSettings,
    TranscriptionSettings,
    VadSettings,
)
from assistant.conversation.dialogue import Dialogue
from assistant.events import Announcement
from assistant.server.connection import RealtimeConnection
from assistant.server.http_api import HttpApi
from assistant.server.http_edge import HttpConnection
from assistant.server.openai_api import OpenAiApi
from assistant.server.realtime.protocol import (
    new_id,
)
from assistant.server.realtime.session import RealtimeSession
from assistant.server.transcriptions import TranscriptionsEndpoint
from assistant.speech.synthesis import speech_problem

if TYPE_CHECKING:
    from assistant.model.backend import ModelBackend
    from assistant.tools import ToolRegistry

log = logging.getLogger(__name__)


class ServeError(Exception):
    """The server cannot start; the message says why in one sentence."""


class AssistantServer:
    """The assistant on the network; use ``async with`` or ``start()`` / ``shutdown()``."""

    def __init__(
        self,
        worker: ModelBackend,
        *,
        settings: ServerSettings | None = None,
        tools: ToolRegistry | None = None,
        model_name: str = "voxtral",
        dialogue_settings: DialogueSettings | None = None,
        params: GenerationParams | None = None,
        vad_settings: VadSettings | None = None,
        transcription_settings: TranscriptionSettings | None = None,
        speech_settings: SpeechSettings | None = None,
    ) -> None:
        self.worker = worker
        self.tools = tools
        self.model_name = model_name
        self.settings = settings or ServerSettings()
        """Where it listens, who may connect, and every bound on clients."""
        self.host = self.settings.host
        self.port = self.settings.port
        """The port; the real one once started (useful with port 0)."""
        self._dialogue_settings = dialogue_settings or DialogueSettings()
        self._params = params or GenerationParams()
        self._vad_settings = vad_settings or VadSettings()
        self._transcription_settings = transcription_settings or TranscriptionSettings()
        self._speech_settings = speech_settings or SpeechSettings()
        self._speech_unavailable: str | None = None
        """Why spoken replies cannot be given (found at start), or None."""
        self._connections: set[RealtimeConnection] = set()
        self._server: Server | None = None
        self._started_s = time.monotonic()
        self._announcer: asyncio.Task[None] | None = None
        self.slow_clients_disconnected = 0
        self.http = HttpApi(
            token=self.settings.token_value,
            allowed_origins=self.settings.allowed_origins,
            health=self.health,
            new_dialogue=self._new_dialogue,
            respond_timeout_s=self.settings.respond_timeout_s,
            max_body_bytes_in_flight=self.settings.max_body_bytes_in_flight,
            transcriptions=TranscriptionsEndpoint(
                worker, self._transcription_settings, self._vad_settings
            ),
            openai=OpenAiApi(
                worker,
                model_name,
                self._params,
                respond_timeout_s=self.settings.respond_timeout_s,
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
        # Every voice said once (and the language model loaded) now, not in a session's
        # first reply; a server that cannot speak still serves text.
        self._speech_unavailable = await asyncio.to_thread(speech_problem, self._speech_settings)
        if self._speech_unavailable is not None:
            log.warning("spoken replies are unavailable: %s", self._speech_unavailable)
        try:
            self._server = await self._listen()
        except OSError as exc:
            raise ServeError(listen_failure(self.host, self.port, exc)) from None
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        if self.tools is not None:
            self._announcer = asyncio.create_task(
                self._announce(self.tools.announcements), name="server-announcements"
            )
        log.info(
            "serving on http://%s:%d (WebSocket /v1/realtime, OpenAI API /v1/chat/completions)",
            self.host,
            self.port,
        )

    async def _listen(self) -> Server:
        limits = self.settings

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
        grace_s = self.settings.shutdown_grace_s
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
        # The wire's session id doubles as the conversation id: tool announcements find their
        # session by it, and the logs of both layers name the same thing.
        return Dialogue(
            self.worker,
            self.tools,
            self._dialogue_settings,
            params=self._params,
            conversation_id=new_id("sess"),
        )

    def _new_session(self, send: Callable[[dict[str, Any]], None]) -> RealtimeSession:
        return RealtimeSession(
            self._new_dialogue(),
            send,
            model_name=self.model_name,
            vad_settings=self._vad_settings,
            limits=self.settings,
            speech_settings=self._speech_settings,
            speech_unavailable=self._speech_unavailable,
        )

    async def _handle(self, ws: ServerConnection) -> None:
        if self._server is None:
            await ws.close(CloseCode.GOING_AWAY, "server shutting down")
            return
        if len(self._connections) >= self.settings.max_sessions:
            await ws.close(
                CloseCode.TRY_AGAIN_LATER,
                f"server full: {len(self._connections)} sessions open; try again later",
            )
            return
        conn = RealtimeConnection(ws, self._new_session, self.settings, self._count_slow_client)
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
            "max_sessions": self.settings.max_sessions,
            "queue_depth": responding + self.http.turns_in_flight,
            "model_waiting": self.worker.waiting_requests,
            "slow_clients_disconnected": self.slow_clients_disconnected,
            "uptime_s": round(time.monotonic() - self._started_s, 1),
        }


def _select_realtime(connection: ServerConnection, offered: Any) -> Any:
    """Answer ``realtime`` when offered (browsers require an answer when they offer any)."""
    return "realtime" if "realtime" in offered else None


def listen_failure(host: str, port: int, error: OSError) -> str:
    """One sentence on why ``host:port`` cannot be bound."""
    reason = error.strerror or str(error)
    hint = " (is another server running there? pick another --port)" if port else ""
    return f"cannot listen on {host}:{port}: {reason}{hint}"
