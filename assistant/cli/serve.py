"""The ``serve`` command: the WebSocket/HTTP server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from assistant.cli.common import (
    CliError,
    add_instructions_option,
    add_model_options,
    setting_flag,
    settings_from_args,
)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the assistant over WebSocket (OpenAI Realtime protocol) and HTTP",
        description="Serve ws://HOST:PORT/v1/realtime (a subset of the OpenAI Realtime protocol), "
        "the browser page at /, POST /v1/respond for automations, GET /healthz, and the "
        "OpenAI-compatible /v1/chat/completions, /v1/models and /v1/audio/transcriptions. "
        "With --backend vllm the model runs on a vLLM server at --model-url. A token is "
        "required off loopback; prefer VOXTRAL_ASSISTANT_SERVER__TOKEN to --token (process "
        "lists show flags). Without --tools: ./tools.yaml when present, else the built-in "
        "tools; installed plugins join either way. Every server.* setting can also be given "
        "with --set (see the README's Settings).",
    )
    add_model_options(p)
    setting_flag(p, "--host", setting="server.host", help="bind address")
    setting_flag(p, "--port", setting="server.port", type=int, help="TCP port; 0 picks a free one")
    setting_flag(p, "--token", setting="server.token", help="bearer token clients must send")
    setting_flag(
        p, "--tools", setting="tools_file", type=Path, help="tools.yaml with the server-side tools"
    )
    add_instructions_option(p)
    setting_flag(
        p,
        "--allowed-origin",
        setting="server.allowed_origins",
        action="append",
        metavar="ORIGIN",
        help="browser Origin allowed besides this server's own page (repeatable; * for any)",
    )
    limits = p.add_argument_group("limits (every other server.* limit: --set)")
    setting_flag(
        limits,
        "--max-sessions",
        setting="server.max_sessions",
        type=int,
        help="concurrent WebSocket sessions",
    )
    setting_flag(
        limits,
        "--max-buffered-audio-s",
        setting="server.max_buffered_audio_s",
        type=float,
        help="uncommitted audio per session",
    )
    setting_flag(
        limits,
        "--idle-timeout-s",
        setting="server.idle_timeout_s",
        type=float,
        help="close silent connections after this",
    )
    # Test aid (README, "Scaling out"): force the tiny test model's replies, on either backend.
    p.add_argument("--forced-replies", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    settings = settings_from_args(args)
    script = None
    if args.forced_replies is not None:
        from assistant.testing.forced import ForcedScriptError, ScriptedReplies

        try:
            script = ScriptedReplies.from_file(args.forced_replies)
        except ForcedScriptError as exc:
            raise CliError(str(exc)) from None

    from assistant.server.assistant_server import ServeError
    from assistant.server.wiring import run_server
    from assistant.tools import ToolsFileError

    try:
        asyncio.run(run_server(settings, forced_replies=script))
    except (ServeError, ToolsFileError) as exc:
        raise CliError(str(exc)) from None
    return 0


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_serve(sub)
