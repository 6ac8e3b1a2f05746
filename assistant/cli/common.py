"""What the subcommands of ``voxtral-assistant`` share: the error type, model flags, settings."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

from assistant.config import Settings, load_settings


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

_TRANSCRIPTION_FLAGS = (
    ("max_piece_s", "max_piece_s"),
    ("batch_pieces", "batch_pieces"),
    ("max_new_tokens", "piece_max_new_tokens"),
)
"""``transcription`` settings and the argparse names of the ``transcribe`` flags."""


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the command line's flags as the top layer, validated with the others.

    The flags join the same validation as the file and the environment, so a check that
    spans layers (a non-loopback host needs a token) sees the final values. The server token,
    wherever it came from, is redacted from the logs from then on.
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
    transcription = {
        k: getattr(args, a) for k, a in _TRANSCRIPTION_FLAGS if getattr(args, a, None) is not None
    }
    if transcription:
        overrides["transcription"] = transcription
    settings = load_settings(overrides, config_file=args.config)
    if settings.server.token is not None:
        LOG_REDACTION.add(settings.server.token.get_secret_value())
    return settings


def load_registry(path: Path) -> Any:
    """The tools of ``path``; a broken file is a ``CliError`` naming file, line and fix."""
    from assistant.tools import ToolsFileError, load_tools

    try:
        return load_tools(path)
    except ToolsFileError as exc:
        raise CliError(str(exc)) from None
