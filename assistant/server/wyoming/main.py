"""``voxtral-assistant wyoming``: check, load, serve until a signal (or stdin closes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from assistant.config import Settings
from assistant.server.wyoming.discovery import Announcement, DiscoveryError, lan_address
from assistant.server.wyoming.server import WyomingServeError, WyomingServer
from assistant.server.wyoming.service import WyomingService
from assistant.server.wyoming.speech import Voices

log = logging.getLogger(__name__)


async def run_wyoming(settings: Settings, *, forced_replies: Path | None = None) -> None:
    """Load the model, tools and voices from ``settings``, then serve until SIGINT/SIGTERM.

    Raises ``WyomingServeError`` (or ``ToolsFileError``, ``SpeechError``) with one sentence
    when it cannot start; the address and the voices are checked before the model loads.
    """
    from assistant.speech.synthesis import make_synthesizer
    from assistant.testing.forced import load_scripted
    from assistant.tools import load_configured_tools

    w = settings.wyoming
    await _check_can_listen(w.uri)
    names = w.voices or [settings.speech.default_voice]
    voices = Voices({voice: make_synthesizer(settings.speech, voice=voice) for voice in names})
    await asyncio.to_thread(_check_voices, voices)
    script = _forced_script(forced_replies)
    tools = await asyncio.to_thread(load_configured_tools, settings.tools_file)
    try:
        try:
            worker = await asyncio.to_thread(load_scripted, script, settings.model)
        except ValueError as exc:
            raise WyomingServeError(str(exc)) from None
        service = WyomingService(
            worker,
            tools=tools,
            voices=voices,
            settings=w,
            vad_settings=settings.vad,
            dialogue_settings=settings.dialogue,
            params=settings.model.generation_params(),
            model_name=settings.model.id,
        )
        try:
            await _serve_until_signalled(WyomingServer(service, w.uri), settings)
        finally:
            await asyncio.to_thread(worker.close)
    finally:
        await tools.aclose()


async def _serve_until_signalled(server: WyomingServer, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with server, contextlib.AsyncExitStack() as stack:
            if settings.wyoming.zeroconf and server.port is not None:
                host = urlsplit(server.uri).hostname or ""
                name = settings.wyoming.zeroconf_name or socket.gethostname()
                try:
                    from assistant.server.wyoming.discovery import service_info

                    info = service_info(name, lan_address(host), server.port)
                except DiscoveryError as exc:
                    raise WyomingServeError(str(exc)) from None
                await stack.enter_async_context(Announcement(info))
                log.info("announced as %s on the LAN (zeroconf)", name)
            ended = asyncio.create_task(server.wait_stdio_closed(), name="wyoming-stdin")
            signalled = asyncio.create_task(stop.wait(), name="wyoming-signal")
            await asyncio.wait({ended, signalled}, return_when=asyncio.FIRST_COMPLETED)
            for task in (ended, signalled):
                task.cancel()
            log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _check_can_listen(uri: str) -> None:
    """Bind a tcp:// address for a moment, before the long model load."""
    parsed = urlsplit(uri)
    if parsed.scheme != "tcp" or not parsed.port:
        return
    try:
        probe = await asyncio.get_running_loop().create_server(
            asyncio.Protocol, parsed.hostname, parsed.port
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WyomingServeError(
            f"cannot listen on {uri}: {reason} (is another server running there? pick another "
            "port in --uri)"
        ) from None
    probe.close()
    await probe.wait_closed()


def _check_voices(voices: Voices) -> None:
    """Speak a word with every voice: an unknown voice fails now, not in Home Assistant."""
    from assistant.speech.errors import SpeechError

    for name in voices.names:
        try:
            voices.pick({"name": name}).synthesize("ok")
        except SpeechError as exc:
            hint = "espeak-ng --voices lists them"
            raise WyomingServeError(f"voice {name!r}: {exc} ({hint})") from None


def _forced_script(path: Path | None) -> Any:
    if path is None:
        return None
    from assistant.testing.forced import ForcedScriptError, ScriptedReplies

    try:
        return ScriptedReplies.from_file(path)
    except ForcedScriptError as exc:
        raise WyomingServeError(str(exc)) from None
