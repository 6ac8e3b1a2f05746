"""The ``voxtral-assistant`` command.

Each subcommand is one ``_add_<name>`` function that declares its parser and sets ``handler``;
a handler takes the parsed arguments and returns the exit status. Heavy modules (torch,
transformers) are imported inside handlers so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant import __version__
from assistant.checkpoint import ModelNotFoundError
from assistant.config import ConfigError, Settings, load_settings

log = logging.getLogger("assistant")


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _setup_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # Our own modules follow -v/-q; third-party libraries stay at WARNING unless -v.
    logging.getLogger("assistant").setLevel(level)
    if verbosity > 0:
        root.setLevel(logging.DEBUG)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="hub id or local folder (default: Voxtral-Mini-3B-2507)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    group.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], help="default: auto"
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the command line's flags as the top layer."""
    overrides: dict[str, Any] = {}
    model = {
        k: getattr(args, a)
        for k, a in (("id", "model"), ("device", "device"), ("dtype", "dtype"))
        if getattr(args, a, None)
    }
    if model:
        overrides["model"] = model
    if getattr(args, "tools", None):
        overrides["tools_file"] = args.tools
    return load_settings(overrides, config_file=args.config)


# --- make-test-model -----------------------------------------------------------------------


def _add_make_test_model(sub: Any) -> None:
    p = sub.add_parser(
        "make-test-model",
        help="write a tiny random Voxtral checkpoint for offline tests",
        description="Write a tiny random Voxtral (model, processor, tekken.json) into DIR; "
        "transformers' from_pretrained loads it offline.",
    )
    p.add_argument("dir", type=Path, help="folder to write (created if missing)")
    p.add_argument("--tokenizer-version", choices=["v7", "v11", "v13"], default="v7")
    p.add_argument(
        "--vocabulary",
        choices=["tiny", "tekken"],
        default="tiny",
        help="tiny byte-level BPE (fast) or the real 150k Tekken vocabulary (realistic)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_make_test_model)


def _make_test_model(args: argparse.Namespace) -> int:
    from assistant.testing.tiny_model import build_tiny_model

    folder = build_tiny_model(args.dir, args.tokenizer_version, args.vocabulary, args.seed)
    kind = f"{args.tokenizer_version}, {args.vocabulary} vocabulary"
    print(f"wrote a tiny Voxtral ({kind}) to {folder}")
    return 0


# --- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="voxtral-assistant",
        description="Real-time voice assistant with function calling on Mistral's Voxtral.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_make_test_model,):
        add(sub)
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
