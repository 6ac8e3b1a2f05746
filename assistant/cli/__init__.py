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
from pathlib import Path

from assistant import __version__
from assistant.cli import audio as cli_audio
from assistant.cli import model as cli_model
from assistant.cli import serve as cli_serve
from assistant.cli import tools as cli_tools
from assistant.cli import transcribe as cli_transcribe
from assistant.cli.common import LOG_REDACTION, CliError
from assistant.config import ConfigError
from assistant.model.checkpoint import ModelNotFoundError


def _setup_logging(verbosity: int) -> None:
    """-q: warnings only; default: the assistant's INFO; -v: DEBUG (websockets at INFO); -vv: all.

    The handler redacts credentials (``LOG_REDACTION``), whichever logger a record comes from.
    """
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
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
    root.setLevel(logging.WARNING)
    # Our own modules follow -v/-q; third-party libraries stay at WARNING unless -v.
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
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output (-v: debug; -vv: also every WebSocket frame)",
    )
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in (cli_model, cli_transcribe, cli_serve, cli_tools, cli_audio):
        family.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxtral-assistant`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - args.quiet)
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
