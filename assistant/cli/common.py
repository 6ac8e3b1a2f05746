"""What the subcommands of ``voxtral-assistant`` share: the error type, model flags, settings."""

from __future__ import annotations

import argparse
import logging
import os
import re
from enum import Enum
from pathlib import Path
from typing import Any

from assistant.config import Settings, load_settings, parse_assignments


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


REDACTED = "[redacted]"

_CREDENTIALS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # "Authorization: Bearer <value>", as a header line or in a header mapping's repr
        r"(\bauthorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|basic|token)\s+)?)[^\s'\",;]+",
        # "?token=<value>", "&access_token=<value>"
        r"(\b[\w.-]*token=)[^&\s#'\",;]+",
        # the Realtime subprotocol that carries a browser's token
        r"(openai-insecure-api-key\.)[^\s'\",;]+",
    )
)
"""Credentials recognised by their shape; group 1 is the name, kept in the log."""


class RedactSecrets(logging.Filter):
    """Rewrites log records so that no credential reaches a log handler.

    Redacts ``Authorization`` values, ``token=`` query values and ``openai-insecure-api-key.``
    subprotocols wherever they appear (websockets logs every request header at DEBUG), and
    every string given to ``add`` (the configured token), in the message, the traceback and
    the stack. Installed on the handler, it covers every logger.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        """Redact ``secret`` wherever it appears from now on."""
        if secret:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by ``[redacted]``."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        for pattern in _CREDENTIALS:
            text = pattern.sub(r"\1" + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


LOG_REDACTION = RedactSecrets()
"""The filter the CLI's log handler carries; ``settings_from_args`` adds the server token."""


SETTING_PREFIX = "setting:"
"""The argparse ``dest`` of a flag that sets a setting: ``setting:server.port``."""


_AFTER = "_after_command"
"""Suffix of the ``dest`` of a global option given after the subcommand (argparse parses a
subcommand into a fresh namespace, so those values are kept apart and combined here)."""


def add_global_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``-v``, ``-q``, ``--config`` and ``--set``: before the subcommand or after it."""
    suffix = "" if top_level else _AFTER
    group = parser.add_argument_group("global options")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="verbose" + suffix,
        help="more log output (-v: debug; -vv: also every WebSocket frame)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        dest="quiet" + suffix,
        help="less log output (-q: warnings and errors only; -qq: errors only)",
    )
    group.add_argument("--config", type=Path, dest="config" + suffix, help="YAML settings file")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        dest="set" + suffix,
        metavar="SETTING=VALUE",
        help="set any setting, e.g. --set server.idle_timeout_s=900 (repeatable; the value "
        "is YAML)",
    )


def verbosity(args: argparse.Namespace) -> int:
    """``-v`` minus ``-q``, counted on both sides of the subcommand."""
    loud = getattr(args, "verbose", 0) + getattr(args, "verbose" + _AFTER, 0)
    return loud - getattr(args, "quiet", 0) - getattr(args, "quiet" + _AFTER, 0)


def config_file(args: argparse.Namespace) -> Path | None:
    """``--config``; given after the subcommand it wins."""
    after: Path | None = getattr(args, "config" + _AFTER, None)
    return after or getattr(args, "config", None)


def _assignments(args: argparse.Namespace) -> list[str]:
    return [*getattr(args, "set", []), *getattr(args, "set" + _AFTER, [])]


def setting_flag(parser: Any, *flags: str, setting: str, **kwargs: Any) -> None:
    """A flag for the setting at the dotted path ``setting`` (the top layer of the settings).

    Its help ends with the setting's default, read from the settings themselves.
    """
    kwargs.setdefault("default", None)
    default = setting_default(setting)
    if kwargs.get("help") and default is not None and default != []:
        shown = default.value if isinstance(default, Enum) else default
        kwargs["help"] = f"{kwargs['help']} (default: {shown})"
    parser.add_argument(*flags, dest=SETTING_PREFIX + setting, **kwargs)


def setting_default(path: str) -> Any:
    """The default of the setting at the dotted ``path`` (``server.port`` -> 8000)."""
    model: Any = Settings
    *groups, name = path.split(".")
    for group in groups:
        model = model.model_fields[group].annotation
    return model.model_fields[name].get_default(call_default_factory=True)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--backend`` and ``--model-url``: the model and
    where it computes."""
    group = parser.add_argument_group("model")
    setting_flag(
        group,
        "--model",
        setting="model.id",
        help="hub id, local folder, or demo (the small demo model in the package)",
    )
    setting_flag(
        group,
        "--device",
        setting="model.device",
        help="where the model computes: auto (CUDA, else Apple's MPS, else the CPU), cpu, "
        "cuda, cuda:N or mps",
    )
    setting_flag(
        group,
        "--dtype",
        setting="model.dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="auto: bfloat16 on a GPU, float32 on the CPU",
    )
    setting_flag(
        group,
        "--backend",
        setting="model.backend",
        choices=["local", "vllm"],
        help="local: the model runs in this process; vllm: on a vLLM server (or another "
        "voxtral-assistant serve) at --model-url, the tokenizer still read from --model",
    )
    setting_flag(
        group,
        "--model-url",
        setting="model.url",
        metavar="URL",
        help="the model server's OpenAI API root, e.g. http://127.0.0.1:8001/v1 (its API key "
        "comes from the variable model.api_key_env names)",
    )


def add_instructions_option(parser: argparse.ArgumentParser) -> None:
    """``--instructions``: the assistant's persona / instruction text."""
    setting_flag(
        parser,
        "--instructions",
        setting="dialogue.instructions",
        metavar="TEXT",
        help="persona / instructions for the assistant",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the command line as the top layer, validated with the others.

    ``--set`` values come first, then the flags of the command (``setting_flag``). The flags
    join the same validation as the file and the environment, so a check that spans layers (a
    non-loopback host needs a token) sees the final values. The server token, wherever it came
    from, and the model server's API key are redacted from the logs from then on.
    """
    overrides = parse_assignments(_assignments(args))
    for dest, value in vars(args).items():
        if not dest.startswith(SETTING_PREFIX) or value is None:
            continue
        *parents, name = dest[len(SETTING_PREFIX) :].split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    settings = load_settings(overrides, config_file=config_file(args))
    if settings.server.token is not None:
        LOG_REDACTION.add(settings.server.token.get_secret_value())
    if settings.model.api_key_env:
        LOG_REDACTION.add(os.environ.get(settings.model.api_key_env, ""))
    return settings


def load_registry(path: Path) -> Any:
    """The tools of ``path``; a broken file is a ``CliError`` naming file, line and fix."""
    from assistant.tools import ToolsFileError, load_tools

    try:
        return load_tools(path)
    except ToolsFileError as exc:
        raise CliError(str(exc)) from None
