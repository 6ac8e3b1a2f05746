"""What the subcommands of ``voxtral-assistant`` share: the error type, model flags, settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from assistant.config import Settings, load_settings


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device`` and ``--dtype``, as most commands take them."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="hub id or local folder (default: Voxtral-Mini-3B-2507)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    group.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], help="default: auto"
    )


_SERVER_FLAGS = (
    ("host", "host"),
    ("port", "port"),
    ("token", "token"),
    ("allowed_origins", "allowed_origin"),
    ("max_sessions", "max_sessions"),
)
"""``server`` settings and the argparse names of the ``serve`` flags that override them."""


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the command line's flags as the top layer, validated with the others.

    The flags join the same validation as the file and the environment, so a check that
    spans layers (a non-loopback host needs a token) sees the final values.
    """
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
    server = {k: getattr(args, a) for k, a in _SERVER_FLAGS if getattr(args, a, None) is not None}
    if server:
        overrides["server"] = server
    return load_settings(overrides, config_file=args.config)


def load_registry(path: Path) -> Any:
    """The tools of ``path``; a broken file is a ``CliError`` naming file, line and fix."""
    from assistant.tools import ToolsFileError, load_tools

    try:
        return load_tools(path)
    except ToolsFileError as exc:
        raise CliError(str(exc)) from None
