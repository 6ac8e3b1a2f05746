"""The ``wyoming`` command: the assistant as Home Assistant voice services (Wyoming protocol)."""

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


def _add_wyoming(sub: Any) -> None:
    p = sub.add_parser(
        "wyoming",
        help="serve Home Assistant: speech-to-text, conversation agent, text-to-speech (Wyoming)",
        description="Serve the Wyoming protocol for Home Assistant: speech-to-text (Voxtral's "
        "transcription mode), a conversation agent with the tools of --tools (default: "
        "./tools.yaml when present, else the built-in tools, plus installed plugins), and "
        "text-to-speech (espeak-ng). Wyoming has no authentication: it listens on loopback "
        "unless --allow-remote is given. Every wyoming.* setting can also be given with --set.",
    )
    add_model_options(p)
    setting_flag(p, "--uri", setting="wyoming.uri", help="tcp://HOST:PORT, unix://PATH or stdio://")
    setting_flag(
        p,
        "--allow-remote",
        setting="wyoming.allow_remote",
        action="store_true",
        help="allow a non-loopback address: anyone who can reach it can use the assistant",
    )
    setting_flag(
        p,
        "--zeroconf",
        setting="wyoming.zeroconf",
        action="store_true",
        help="announce the server on the LAN for Home Assistant's discovery",
    )
    setting_flag(
        p,
        "--zeroconf-name",
        setting="wyoming.zeroconf_name",
        metavar="NAME",
        help="the announced name (default: the host name)",
    )
    setting_flag(
        p, "--tools", setting="tools_file", type=Path, help="tools.yaml with the agent's tools"
    )
    add_instructions_option(p)
    setting_flag(
        p,
        "--voice",
        setting="wyoming.voices",
        action="append",
        metavar="VOICE",
        help="espeak-ng voice to offer (repeatable; the first is the default; default: the "
        "speech.voice setting, else the voice of speech.default_language)",
    )
    p.add_argument("--forced-replies", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(handler=_wyoming)


def _wyoming(args: argparse.Namespace) -> int:
    import asyncio

    settings = settings_from_args(args)

    from assistant.server.wyoming.main import run_wyoming
    from assistant.server.wyoming.server import WyomingServeError
    from assistant.speech.errors import SpeechError
    from assistant.tools import ToolsFileError

    try:
        asyncio.run(run_wyoming(settings, forced_replies=args.forced_replies))
    except (WyomingServeError, ToolsFileError, SpeechError) as exc:
        raise CliError(str(exc)) from None
    return 0


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_wyoming(sub)
