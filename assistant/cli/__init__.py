"""The ``voxtral-assistant`` command.

Each family of subcommands lives in a module of this package: an ``_add_<name>`` function
declares its parser and sets ``handler``, which takes the parsed arguments and returns the exit
status.
Heavy modules (torch, transformers) are imported inside handlers so that ``--help`` stays
instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from assistant import __version__
from assistant.cli import audio as cli_audio
from assistant.cli import model as cli_model
from assistant.cli import serve as cli_serve
from assistant.cli import settings as cli_settings
from assistant.cli import tools as cli_tools
from assistant.cli import transcribe as cli_transcribe
from assistant.cli import wyoming as cli_wyoming
from assistant.cli.common import LOG_REDACTION, CliError, add_global_options, verbosity
from assistant.config import ConfigError
from assistant.model.checkpoint import ModelNotFoundError


def _setup_logging(verbosity: int) -> None:
    """The log levels for ``-v`` / ``-q`` (``verbosity`` is their difference).

    -qq: errors only; -q: warnings and errors; default: the assistant's INFO (what it loaded,
    each turn); -v: DEBUG (websockets at INFO); -vv: everything, every WebSocket frame too.
    The handler redacts credentials (``LOG_REDACTION``), whichever logger a record comes from.
    """
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[
        max(-2, min(1, verbosity))
    ]
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(LOG_REDACTION)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party libraries stay at WARNING (ERROR with -qq) unless -v.
    root.setLevel(max(level, logging.WARNING))
    logging.getLogger("assistant").setLevel(level)
    websockets_level = logging.NOTSET  # the root's
    if verbosity > 0:
        root.setLevel(logging.DEBUG)
        # At DEBUG websockets logs every frame and request header: only when asked with -vv.
        websockets_level = logging.DEBUG if verbosity > 1 else logging.INFO
    logging.getLogger("websockets").setLevel(websockets_level)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="voxtral-assistant",
        description="Real-time voice assistant with function calling on Mistral's Voxtral.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in (
        cli_model,
        cli_transcribe,
        cli_serve,
        cli_wyoming,
        cli_tools,
        cli_audio,
        cli_settings,
    ):
        family.add_commands(sub)
    _give_global_options(sub)
    return parser


def _give_global_options(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every subcommand (and sub-subcommand) also takes the global options after its name."""
    for command in sub.choices.values():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _give_global_options(nested[0])
        else:
            add_global_options(command, top_level=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxtral-assistant`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(verbosity(args))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except (CliError, ConfigError, ModelNotFoundError) as exc:
        print(f"voxtral-assistant: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
