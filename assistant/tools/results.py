"""Turn what a handler returned (or raised) into the bounded JSON text the model reads."""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

MAX_ERROR_CHARS = 500
"""An error message longer than this is cut: the model needs the gist, not a dump."""


class ResultError(Exception):
    """A handler's return value cannot be handed to the model."""


def serialize_result(value: Any, max_bytes: int) -> str:
    """Compact JSON for ``value``; ``None`` reads as ``{"ok": true}``.

    pydantic models, dataclasses, enums, dates and sets are converted; an iterator anywhere in
    ``value``, anything else JSON cannot hold, NaN, or JSON over ``max_bytes`` raises
    ``ResultError`` with a readable reason.
    """
    if value is None:
        value = {"ok": True}
    _check_shape(value, max_bytes)
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
    if len(text.encode("utf-8")) > max_bytes:
        raise _too_big(max_bytes)
    return text


_CONTAINERS = (list, tuple, set, frozenset, deque)
"""The sequences pydantic turns into JSON arrays (a ``range`` or a dict view it refuses)."""


def _check_shape(value: Any, max_bytes: int) -> None:
    """Refuse an iterator anywhere in ``value``, or a value sure to exceed ``max_bytes``.

    Serializing reads an iterator to its end on the event loop, past the tool's timeout (a
    slow generator stalls every conversation, an endless one never returns), so it is refused
    unread. Every item costs at least one byte of JSON and a string at least its length, so a
    lower bound of the size is known before any JSON is built.
    """
    pending = [value]
    seen: set[int] = set()
    size_bytes = 0
    while pending:
        item = pending.pop()
        if isinstance(item, (Iterator, AsyncIterator)):
            kind = "an async iterator" if isinstance(item, AsyncIterator) else "an iterator"
            where = "returned" if item is value else "returned a value containing"
            raise ResultError(
                f"the tool {where} {kind} ({type(item).__name__}), which cannot be sent as "
                "JSON; return a JSON-able value such as a list instead"
            )
        size_bytes += 1 + (len(item) if isinstance(item, (str, bytes, bytearray)) else 0)
        if size_bytes > max_bytes:
            raise _too_big(max_bytes)
        if id(item) in seen:
            continue  # shared, or a cycle that serializing reports
        seen.add(id(item))
        if isinstance(item, (Mapping, *_CONTAINERS)):
            if size_bytes + len(item) > max_bytes:
                raise _too_big(max_bytes)  # before copying a million items onto the stack
            if isinstance(item, Mapping):
                pending.extend(item.keys())
                pending.extend(item.values())
            else:
                pending.extend(item)
        elif isinstance(item, BaseModel):
            pending.extend(field_value for _, field_value in item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            pending.extend(getattr(item, field.name) for field in dataclasses.fields(item))


def _too_big(max_bytes: int) -> ResultError:
    return ResultError(
        f"the tool returned more than the {max_bytes} bytes of JSON allowed; "
        "return less (a summary, or the first items)"
    )


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
