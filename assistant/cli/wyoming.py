"""The ``wyoming`` command: the assistant as Home Assistant voice services (Wyoming protocol)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from assistant.cli.common import CliError, add_model_options, settings_from_args


def _add_wyoming(sub: Any) -> None:
    p = sub.add_parser(
        "wyoming",
        help="serve Home Assistant: speech-to-text, conversation agent, text-to-speech (Wyoming)",
        description="Serve the Wyoming protocol for Home Assistant: speech-to-text (Voxtral's "
        "transcription mode), a conversation agent with the tools of --tools, and text-to-speech "
        "(espeak-ng). Wyoming has no authentication: it listens on loopback unless "
        "--allow-remote is given.",
    )
    add_model_options(p)
    p.add_argument(
        "--uri", help="tcp://HOST:PORT (default tcp://127.0.0.1:10300), unix://PATH or stdio://"
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow a non-loopback address: anyone who can reach it can use the assistant",
    )
    p.add_argument(
        "--zeroconf",
        nargs="?",
        const="",
        metavar="NAME",
        help="announce the server on the LAN for Home Assistant's discovery (name: host name)",
    )
    p.add_argument("--tools", type=Path, help="tools.yaml with the conversation agent's tools")
    p.add_argument(
        "--voice",
        action="append",
        metavar="VOICE",
        help="espeak-ng voice to offer (repeatable; the first is the default; default en-us)",
    )
    p.add_argument("--forced-replies", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(handler=_wyoming)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    wyoming: dict[str, Any] = {}
    if args.uri:
        wyoming["uri"] = args.uri
    if args.allow_remote:
        wyoming["allow_remote"] = True
    if args.zeroconf is not None:
        wyoming["zeroconf"] = True
        if args.zeroconf:
            wyoming["zeroconf_name"] = args.zeroconf
    if args.voice:
        wyoming["voices"] = args.voice
    return {"wyoming": wyoming} if wyoming else {}


def _wyoming(args: argparse.Namespace) -> int:
    import asyncio

    settings = settings_from_args(args, extra=_overrides(args))

    from assistant.server.wyoming.main import run_wyoming
    from assistant.server.wyoming.server import WyomingServeError
    from assistant.speech.tts import SpeechError
    from assistant.tools import ToolsFileError

    try:
        asyncio.run(run_wyoming(settings, forced_replies=args.forced_replies))
    except (WyomingServeError, ToolsFileError, SpeechError) as exc:
        raise CliError(str(exc)) from None
    return 0


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_wyoming(sub)
