"""From settings to a running server: load the model and tools, serve until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

from assistant.config import Settings
from assistant.conversation.settings import DialogueSettings
from assistant.server.assistant_server import AssistantServer, ServeError, listen_failure
from assistant.server.limits import ServerLimits

log = logging.getLogger(__name__)


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
