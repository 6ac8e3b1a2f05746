"""What a tool returns: iterators are refused unread, and size is bounded before JSON is built."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from assistant.events import ToolCall, ToolResult
from assistant.tools import ToolRegistry, tool


async def run_tool(value: Any, timeout_s: float = 10) -> ToolResult:
    """Run a tool that returns ``value`` and give back its result."""

    @tool(timeout_s=timeout_s)
    async def answer() -> object:
        """Return the value under test."""
        return value

    registry = ToolRegistry.from_functions([answer])
    try:
        return await registry.execute(ToolCall("resultcall", "answer", {}))
    finally:
        await registry.aclose()


async def test_a_slow_generator_is_refused_unread_without_stalling_the_loop() -> None:
    """A generator is an error at once: never read on the event loop, never past the timeout."""
    started_reading = []

    def slow_items() -> Iterator[int]:
        started_reading.append(True)
        for i in range(6):
            time.sleep(0.5)
            yield i

    stamps: list[float] = []

    async def heartbeat() -> None:
        while True:
            stamps.append(time.monotonic())
            await asyncio.sleep(0.02)

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.1)
    result = await run_tool(slow_items(), timeout_s=1)
    await asyncio.sleep(0.1)
    beating.cancel()
    longest_stall_s = max(b - a for a, b in itertools.pairwise(stamps))
    assert not result.ok
    assert json.loads(result.content) == {
        "error": "the tool returned an iterator (generator), which cannot be sent as JSON; "
        "return a JSON-able value such as a list instead"
    }
    assert started_reading == []
    assert result.duration_s < 0.5
    assert longest_stall_s < 0.4


async def _async_items() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make_value", "named"),
    [
        (lambda: itertools.count(), "an iterator (count)"),
        (lambda: map(str, [1, 2]), "an iterator (map)"),
        (lambda: iter([1, 2]), "an iterator (list_iterator)"),
        (lambda: _async_items(), "an async iterator (async_generator)"),
    ],
    ids=["endless", "map", "list_iterator", "async_generator"],
)
async def test_every_kind_of_iterator_is_refused_by_name(make_value: Any, named: str) -> None:
    """Endless, lazy and async iterators all become an error naming their type."""
    result = await run_tool(make_value())
    assert not result.ok
    assert f"the tool returned {named}" in result.content
    assert "such as a list" in result.content


@dataclasses.dataclass
class Listing:
    """A result with an iterator tucked inside."""

    title: str
    items: Any


@pytest.mark.parametrize(
    "value",
    [
        {"items": itertools.count()},
        [1, [2, iter([3])]],
        Listing("endless", itertools.count()),
    ],
    ids=["in-a-dict", "in-a-nested-list", "in-a-dataclass"],
)
async def test_an_iterator_inside_the_result_is_refused(value: Any) -> None:
    """An iterator anywhere inside the result is refused as well, unread."""
    result = await run_tool(value)
    assert not result.ok
    assert "the tool returned a value containing an iterator" in result.content


async def test_a_huge_list_is_refused_before_any_json_is_built() -> None:
    """Twenty million items are counted, not serialized: the refusal is immediate."""
    result = await run_tool([0] * 20_000_000)
    assert not result.ok
    assert "more than the 16384 bytes of JSON allowed" in result.content
    assert result.duration_s < 0.5


async def test_a_cycle_is_a_readable_error() -> None:
    """A list that contains itself is reported, not walked forever."""
    loop: list[Any] = [1]
    loop.append(loop)
    result = await run_tool(loop)
    assert not result.ok
    assert "cannot be turned into JSON" in result.content


async def test_shared_values_and_models_still_serialize() -> None:
    """The same value twice, sets and nested dataclasses come out as plain JSON."""
    shared = {"room": "hall"}
    result = await run_tool({"a": shared, "b": shared, "tags": {"x"}, "l": Listing("t", [1])})
    assert result.ok, result.content
    assert json.loads(result.content) == {
        "a": {"room": "hall"},
        "b": {"room": "hall"},
        "tags": ["x"],
        "l": {"title": "t", "items": [1]},
    }
