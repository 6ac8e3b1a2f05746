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


# --- serve ---------------------------------------------------------------------------------


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the assistant over WebSocket (OpenAI Realtime protocol) and HTTP",
        description="Serve ws://HOST:PORT/v1/realtime (a subset of the OpenAI Realtime protocol), "
        "the browser page at /, POST /v1/respond for automations and GET /healthz. A token is "
        "required off loopback; prefer VOXTRAL_ASSISTANT_SERVER__TOKEN to --token (process "
        "lists show flags).",
    )
    _add_model_options(p)
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

    from pydantic import ValidationError

    from assistant.config import ServerSettings

    base = settings_from_args(args)
    flags = {
        "host": args.host,
        "port": args.port,
        "token": args.token,
        "allowed_origins": args.allowed_origin,
        "max_sessions": args.max_sessions,
    }
    try:
        server_settings = ServerSettings.model_validate(
            {**base.server.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
        )
    except ValidationError as exc:
        # Never echo a rejected value: it may be the token.
        raise CliError(
            "; ".join(
                f"server.{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    settings = base.model_copy(update={"server": server_settings})

    from assistant.ws_server import run_server

    asyncio.run(
        run_server(
            settings,
            max_buffered_audio_s=args.max_buffered_audio_s,
            idle_timeout_s=args.idle_timeout_s,
        )
    )
    return 0


# --- tools ---------------------------------------------------------------------------------


def _add_tools(sub: Any) -> None:
    p = sub.add_parser(
        "tools",
        help="check tools.yaml, or run one tool by hand",
        description="Validate a tools.yaml (and the installed plugins) or call one tool with "
        "JSON arguments, exactly as the model's call would run.",
    )
    tools_sub = p.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    check = tools_sub.add_parser("check", help="validate a tools.yaml and list its tools")
    check.add_argument(
        "file", nargs="?", type=Path, help="default: settings' tools_file, or ./tools.yaml"
    )
    check.set_defaults(handler=_tools_check)
    call = tools_sub.add_parser("call", help="run one tool: tools call NAME '{\"arg\": 1}'")
    call.add_argument("name", help="tool name")
    call.add_argument("arguments", nargs="?", default="{}", help="JSON object (default {})")
    call.add_argument("--tools", type=Path, help="tools.yaml (default: settings, ./tools.yaml)")
    call.set_defaults(handler=_tools_call)


def _tools_file(args: argparse.Namespace, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    configured = load_settings(config_file=args.config).tools_file
    return configured or Path("tools.yaml")


def _load_registry(path: Path) -> Any:
    from assistant.tools import ToolsFileError, load_tools

    try:
        return load_tools(path)
    except ToolsFileError as exc:
        raise CliError(str(exc)) from None


def _tools_check(args: argparse.Namespace) -> int:
    import asyncio

    path = _tools_file(args, args.file)
    registry = _load_registry(path)
    print(f"{path}: {len(registry)} tool{'s' if len(registry) != 1 else ''}, all valid")
    width = max((len(spec.name) for spec in registry.specs), default=0)
    for spec in registry.specs:
        flags = " [confirm]" if spec.confirm else ""
        print(f"  {spec.name:<{width}}  {spec.kind:<6}  {spec.description}{flags}")
        print(f"  {'':<{width}}  {'':<6}  from {spec.source}, timeout {spec.timeout_s:g} s")
    asyncio.run(registry.aclose())
    return 0


def _tools_call(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import secrets
    import string

    from assistant.events import ToolCall

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        raise CliError(
            f'ARGUMENTS is not valid JSON ({exc}); quote it: \'{{"room": "kitchen"}}\''
        ) from None
    if not isinstance(arguments, dict):
        raise CliError("ARGUMENTS must be a JSON object, e.g. '{}'")
    registry = _load_registry(_tools_file(args, args.tools))
    if args.name not in registry:
        names = ", ".join(spec.name for spec in registry.specs)
        raise CliError(f"no tool named {args.name!r}; available: {names}")
    alphabet = string.ascii_letters + string.digits
    call = ToolCall(
        id="".join(secrets.choice(alphabet) for _ in range(9)), name=args.name, arguments=arguments
    )

    async def run() -> Any:
        try:
            return await registry.execute(call)
        finally:
            await registry.aclose()

    result = asyncio.run(run())
    print(result.content)
    return 0 if result.ok else 1


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
    for add in (_add_make_test_model, _add_serve, _add_tools):
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
