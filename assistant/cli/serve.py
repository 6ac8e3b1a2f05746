"""The ``serve`` command: the WebSocket/HTTP server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from assistant.cli.common import CliError, add_model_options, settings_from_args


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the assistant over WebSocket (OpenAI Realtime protocol) and HTTP",
        description="Serve ws://HOST:PORT/v1/realtime (a subset of the OpenAI Realtime protocol), "
        "the browser page at /, POST /v1/respond for automations and GET /healthz. A token is "
        "required off loopback; prefer VOXTRAL_ASSISTANT_SERVER__TOKEN to --token (process "
        "lists show flags).",
    )
    add_model_options(p)
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--token", help="bearer token clients must send")
    p.add_argument("--tools", type=Path, help="tools.yaml with the server-side tools")
    p.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="browser Origin allowed besides this server's own page (repeatable; * for any)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-sessions", type=int, help="concurrent WebSocket sessions (16)")
    limits.add_argument(
        "--max-buffered-audio-s", type=float, default=300.0, help="uncommitted audio per session"
    )
    limits.add_argument(
        "--idle-timeout-s", type=float, default=600.0, help="close silent connections after this"
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    settings = settings_from_args(args)

    from assistant.server.assistant_server import ServeError
    from assistant.server.wiring import run_server
    from assistant.tools import ToolsFileError

    try:
        asyncio.run(
            run_server(
                settings,
                max_buffered_audio_s=args.max_buffered_audio_s,
                idle_timeout_s=args.idle_timeout_s,
            )
        )
    except (ServeError, ToolsFileError) as exc:
        raise CliError(str(exc)) from None
    return 0


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_serve(sub)
