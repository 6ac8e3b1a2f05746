"""Reading Wyoming events from a stream, within bounds.

An event is a JSON header line (``type``, optional ``data``, ``data_length``,
``payload_length``), then ``data_length`` bytes of extra JSON data, then ``payload_length``
bytes of payload (audio). The ``wyoming`` library's reader trusts the lengths (a client could
make the server buffer any amount) and ends the connection without a word on a bad line; this
one refuses oversize parts and says why with ``FrameError``. Writing uses the library's own
``async_write_event``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from wyoming.event import Event


@dataclass(frozen=True)
class FrameLimits:
    """The largest parts of one event a client may send."""

    max_data_bytes: int = 1 << 20
    """Extra JSON data after the header line."""
    max_payload_bytes: int = 4 << 20
    """Binary payload: one audio chunk (a second of 48 kHz stereo 32-bit audio is 384 KiB)."""


class FrameError(Exception):
    """The bytes are not a Wyoming event; framing is lost, so the connection must end."""


async def read_event(reader: asyncio.StreamReader, limits: FrameLimits) -> Event | None:
    """The next event, or None when the client has gone (end of stream, reset)."""
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's StreamReader limit (64 KiB by default) on one line
        raise FrameError("an event header line is too long") from None
    except ConnectionError:
        return None
    if not line.endswith(b"\n"):
        return None  # the stream ended, perhaps mid-line: the client is gone
    try:
        header = json.loads(line)
    except ValueError:
        raise FrameError("an event header line is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise FrameError("an event header needs a 'type' string")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise FrameError(f"{header['type']}: 'data' must be a JSON object")
    data_length = _length(header, "data_length", limits.max_data_bytes)
    payload_length = _length(header, "payload_length", limits.max_payload_bytes)
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise FrameError(f"{header['type']}: its data must be a JSON object")
            data = {**data, **extra}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    except ValueError:
        raise FrameError(f"{header['type']}: its data is not JSON") from None
    return Event(type=header["type"], data=data, payload=payload)


def _length(header: dict[str, object], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FrameError(f"{header['type']}: '{key}' must be a whole number of bytes")
    if value > limit:
        raise FrameError(f"{header['type']}: {key} {value} is over the {limit} bytes allowed")
    return value
