"""From settings to a running server: load the model and tools, serve until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from assistant.config import Settings
from assistant.server.assistant_server import AssistantServer, ServeError, listen_failure

if TYPE_CHECKING:
    from assistant.testing.forced import ScriptedReplies

log = logging.getLogger(__name__)


async def run_server(settings: Settings, *, forced_replies: ScriptedReplies | None = None) -> None:
    """Load the model (or connect to its server) and the tools from ``settings``, then serve
    until SIGINT or SIGTERM.

    Raises ``ServeError`` (or ``ToolsFileError``) with one clear sentence when it cannot start;
    the address is checked before the model loads, which takes minutes for a real checkpoint.
    ``forced_replies`` (a test aid) is what the model is made to say, on either backend.
    """
    from assistant.testing.forced import load_scripted
    from assistant.tools import load_configured_tools

    await check_can_listen(settings.server.host, settings.server.port)
    tools = load_configured_tools(settings.tools_file)
    try:
        try:
            worker = await asyncio.to_thread(load_scripted, forced_replies, settings.model)
        except ValueError as exc:
            raise ServeError(str(exc)) from None
        server = AssistantServer(
            worker,
            settings=settings.server,
            tools=tools,
            model_name=settings.model.id,
            dialogue_settings=settings.dialogue,
            params=settings.model.generation_params(),
            vad_settings=settings.vad,
            transcription_settings=settings.transcription,
            speech_settings=settings.speech,
        )
        try:
            await serve_until_signalled(server)
        finally:
            await asyncio.to_thread(worker.close)
    finally:
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
