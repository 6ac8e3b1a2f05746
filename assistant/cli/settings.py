"""The ``settings`` command: every setting, its environment variable, default and meaning."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

from assistant.cli.common import settings_from_args
from assistant.config import ENV_PREFIX, Settings


def setting_rows(current: Settings | None = None) -> Iterator[tuple[str, str, str, str]]:
    """(setting, environment variable, default or current value, description) per setting."""
    yield from _rows(Settings, current, ())


def _rows(
    model: type[BaseModel], current: BaseModel | None, path: tuple[str, ...]
) -> Iterator[tuple[str, str, str, str]]:
    for name, field in model.model_fields.items():
        here = (*path, name)
        value = getattr(current, name) if current is not None else None
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            yield from _rows(group, value, here)
            continue
        shown = value if current is not None else field.get_default(call_default_factory=True)
        env = ENV_PREFIX + "__".join(part.upper() for part in here)
        yield ".".join(here), env, _show(shown), " ".join((field.description or "").split())


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(set)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "none"
    if isinstance(value, int) and value >= 2**20 and value % 2**20 == 0:
        return f"{value // 2**20} MiB" if value < 2**30 else f"{value / 2**30:g} GiB"
    return str(value)


def markdown_table(rows: Iterator[tuple[str, str, str, str]]) -> str:
    """The rows as the README's Markdown table."""
    lines = ["| setting | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{s}` | `{e}` | {d} | {m} |" for s, e, d, m in rows]
    return "\n".join(lines)


def _add_settings(sub: Any) -> None:
    p = sub.add_parser(
        "settings",
        help="list every setting with its environment variable, default and meaning",
        description="List every setting (set it in the --config YAML file, with its environment "
        "variable, or with --set SETTING=VALUE). --current shows the values the other commands "
        "would run with, from the file, the environment and --set (the token is never shown).",
    )
    p.add_argument("--current", action="store_true", help="show the effective values")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(handler=_settings)


def _settings(args: argparse.Namespace) -> int:
    rows = setting_rows(settings_from_args(args) if args.current else None)
    if args.markdown:
        print(markdown_table(rows))
        return 0
    for setting, env, value, meaning in rows:
        print(
            f"{setting} = {value}\n    {env}\n    {meaning}"
            if meaning
            else f"{setting} = {value}\n    {env}"
        )
    return 0


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_settings(sub)
