"""The ``tools`` command: check a tools.yaml, or run one tool by hand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from assistant.cli.common import CliError, load_registry, settings_from_args


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
        "file",
        nargs="?",
        type=Path,
        help="default: the tools_file setting, else ./tools.yaml, else the built-in tools",
    )
    check.set_defaults(handler=_tools_check)
    call = tools_sub.add_parser("call", help="run one tool: tools call NAME '{\"arg\": 1}'")
    call.add_argument("name", help="tool name")
    call.add_argument("arguments", nargs="?", default="{}", help="JSON object (default {})")
    call.add_argument(
        "--tools",
        type=Path,
        help="tools.yaml (default: the tools_file setting, else ./tools.yaml, else built-in)",
    )
    call.set_defaults(handler=_tools_call)


def _tools_file(args: argparse.Namespace, explicit: Path | None) -> Path:
    from assistant.tools.loader import tools_file_to_use

    if explicit is not None:
        return explicit
    return tools_file_to_use(settings_from_args(args).tools_file)


def _tools_check(args: argparse.Namespace) -> int:
    import asyncio

    path = _tools_file(args, args.file)
    registry = load_registry(path)
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

    from assistant.events import ToolCall, new_tool_call_id

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        raise CliError(
            f'ARGUMENTS is not valid JSON ({exc}); quote it: \'{{"room": "kitchen"}}\''
        ) from None
    if not isinstance(arguments, dict):
        raise CliError("ARGUMENTS must be a JSON object, e.g. '{}'")
    registry = load_registry(_tools_file(args, args.tools))
    if args.name not in registry:
        names = ", ".join(spec.name for spec in registry.specs)
        raise CliError(f"no tool named {args.name!r}; available: {names}")
    call = ToolCall(id=new_tool_call_id(), name=args.name, arguments=arguments)

    async def run() -> Any:
        try:
            return await registry.execute(call)
        finally:
            await registry.aclose()

    result = asyncio.run(run())
    print(result.content)
    return 0 if result.ok else 1


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_tools(sub)
