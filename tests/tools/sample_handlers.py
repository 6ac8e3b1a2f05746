"""Handlers with known faults and behaviours, imported by tools.yaml files in the tests."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from typing import Any

from assistant.tools import ToolContext, tool

calls: list[dict[str, Any]] = []
"""Arguments every recording handler received, in order."""

cancelled = threading.Event()
"""Set when ``hang_async`` sees its cancellation."""


def record(**arguments: Any) -> dict[str, Any]:
    """Remember the arguments and echo them."""
    calls.append(arguments)
    return {"received": arguments}


def boom(**arguments: Any) -> None:
    """Fail like a buggy handler."""
    raise RuntimeError("the relay is stuck")


def leak_secret() -> None:
    """Fail with a message that contains a secret from the environment."""
    raise PermissionError(f"token {os.environ['TEST_TOOL_TOKEN']} was rejected")


async def hang_async() -> None:
    """Never finish (until cancelled)."""
    try:
        await asyncio.sleep(3600)
    finally:
        cancelled.set()


def hang_sync(seconds: float = 3.0) -> str:
    """Block a thread for a while."""
    time.sleep(seconds)
    return "finally"


def unserializable() -> object:
    """Return something JSON cannot hold."""
    return object()


def huge() -> str:
    """Return 10 MB of text."""
    return "x" * (10 * 1024 * 1024)


def nothing() -> None:
    """Return nothing at all."""


@dataclasses.dataclass
class Reading:
    """A sensor reading."""

    sensor: str
    value_c: float


def reading() -> Reading:
    """Return a dataclass."""
    return Reading("hall", 21.5)


def thread_name() -> str:
    """Say which thread ran the call."""
    return threading.current_thread().name


async def wait_at(barrier_name: str, context: ToolContext) -> str:
    """Wait until ``parties`` calls reached the same barrier (proves they run together)."""
    await BARRIERS[barrier_name].wait()
    return context.call.id


async def sleep_then_echo(delay_s: float, tag: str) -> str:
    """Finish after ``delay_s``."""
    await asyncio.sleep(delay_s)
    return tag


BARRIERS: dict[str, asyncio.Barrier] = {}


@tool(name="polite_greeting", timeout_s=3)
def greet(name: str, formal: bool = False) -> str:
    """Greet someone by name.

    Args:
        name: Who to greet.
        formal: Use a formal greeting.
    """
    return f"Good day, {name}." if formal else f"Hi {name}!"
