"""Turn what a handler returned (or raised) into the bounded JSON text the model reads."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

MAX_ERROR_CHARS = 500
"""An error message longer than this is cut: the model needs the gist, not a dump."""


class ResultError(Exception):
    """A handler's return value cannot be handed to the model."""


def serialize_result(value: Any, max_bytes: int) -> str:
    """Compact JSON for ``value``; ``None`` reads as ``{"ok": true}``.

    pydantic models, dataclasses, enums, dates and sets are converted; anything else, NaN, or
    JSON over ``max_bytes`` raises ``ResultError`` with a readable reason.
    """
    if value is None:
        value = {"ok": True}
    try:
        text = json.dumps(to_jsonable_python(value), ensure_ascii=False, allow_nan=False)
    except PydanticSerializationError:
        raise ResultError(
            f"the tool returned a {type(value).__name__} value that cannot be turned into JSON"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ResultError(
            f"the tool returned a value that cannot be turned into JSON: {exc}"
        ) from None
    size_bytes = len(text.encode("utf-8"))
    if size_bytes > max_bytes:
        raise ResultError(
            f"the tool returned {size_bytes} bytes of JSON, more than the {max_bytes} allowed"
        )
    return text


def error_content(message: str, **details: Any) -> str:
    """The JSON the model reads for a failed call: ``{"error": message, ...}``."""
    return json.dumps({"error": message, **details}, ensure_ascii=False)


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, cut to ``MAX_ERROR_CHARS``; never a traceback."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return shorten(text)


def shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Redactor:
    """Replaces known secret values with ``***`` (longest first, so overlaps stay hidden)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` without any secret in it."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text
