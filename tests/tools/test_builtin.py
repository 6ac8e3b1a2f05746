"""The shipped Python tools: time and a timer that announces itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest

from assistant.events import Announcement, ToolCall
from assistant.tools import ToolRegistry
from assistant.tools.builtin import cancel_timer, get_time, set_timer


@pytest.fixture
async def registry() -> AsyncIterator[ToolRegistry]:
    registry = ToolRegistry.from_functions([get_time, set_timer, cancel_timer])
    yield registry
    await registry.aclose()


async def test_get_time_in_a_time_zone(registry: ToolRegistry) -> None:
    """get_time answers with the date and time in the asked zone."""
    result = await registry.execute(ToolCall("timecall1", "get_time", {"timezone": "Asia/Tokyo"}))
    content = json.loads(result.content)
    stamp = dt.datetime.fromisoformat(content["iso"])
    assert stamp.utcoffset() == dt.timedelta(hours=9)
    assert content["date"] == stamp.date().isoformat()


async def test_get_time_unknown_zone(registry: ToolRegistry) -> None:
    """An unknown zone is a readable error with an example."""
    result = await registry.execute(ToolCall("timecall1", "get_time", {"timezone": "Mars/Base"}))
    assert not result.ok
    assert "unknown time zone 'Mars/Base'" in result.content


async def test_timer_announces_when_it_fires(registry: ToolRegistry) -> None:
    """set_timer returns at once; when it runs out, an announcement is queued."""
    result = await registry.execute(
        ToolCall("timercall", "set_timer", {"duration_s": 1, "label": "tea"})
    )
    assert json.loads(result.content)["label"] == "tea"
    assert registry.background_tasks == ["timer:tea"]
    announcement = await asyncio.wait_for(registry.announcements.get(), timeout=5)
    assert announcement == Announcement(text="Your tea timer is done.", source="set_timer")
    assert registry.background_tasks == []


async def test_cancelled_timer_stops(registry: ToolRegistry) -> None:
    """cancel_timer stops a running timer."""
    await registry.execute(ToolCall("timercall", "set_timer", {"duration_s": 600}))
    result = await registry.execute(ToolCall("cancelcal", "cancel_timer", {}))
    await asyncio.sleep(0)
    assert json.loads(result.content) == {"cancelled": "timer"}
    assert registry.background_tasks == []


async def test_cancel_unknown_timer_lists_running_ones(registry: ToolRegistry) -> None:
    """Cancelling a timer that does not exist names the ones that do."""
    await registry.execute(ToolCall("timercall", "set_timer", {"duration_s": 600, "label": "eggs"}))
    result = await registry.execute(ToolCall("cancelcal", "cancel_timer", {"label": "rice"}))
    assert not result.ok
    assert "no timer called 'rice' is running (running: eggs)" in result.content


async def test_timers_belong_to_their_conversation(registry: ToolRegistry) -> None:
    """Two conversations' timers of the same label neither replace nor cancel each other."""
    tea = {"duration_s": 600, "label": "tea"}
    await registry.execute(ToolCall("timercal1", "set_timer", tea), conversation_id="alice")
    await registry.execute(ToolCall("timercal2", "set_timer", tea), conversation_id="bob")
    assert registry.background_tasks == ["alice/timer:tea", "bob/timer:tea"]
    cancel = ToolCall("cancelcal", "cancel_timer", {"label": "tea"})
    assert (await registry.execute(cancel, conversation_id="bob")).ok
    assert registry.background_tasks == ["alice/timer:tea"]
    refused = await registry.execute(cancel, conversation_id="carol")
    assert not refused.ok and "running:" not in refused.content  # alice's timer is not shown


async def test_timer_announces_to_its_conversation(registry: ToolRegistry) -> None:
    """A timer's announcement carries the conversation that set it."""
    await registry.execute(
        ToolCall("timercall", "set_timer", {"duration_s": 1}), conversation_id="alice"
    )
    announcement = await asyncio.wait_for(registry.announcements.get(), timeout=5)
    assert announcement.conversation_id == "alice"


async def test_timer_bounds(registry: ToolRegistry) -> None:
    """A timer must last between 1 s and a day."""
    result = await registry.execute(ToolCall("timercall", "set_timer", {"duration_s": 0}))
    assert not result.ok
    assert "less than the minimum of 1" in result.content


async def test_close_cancels_pending_timers() -> None:
    """Closing the registry cancels timers that have not fired."""
    registry = ToolRegistry.from_functions([set_timer])
    await registry.execute(ToolCall("timercall", "set_timer", {"duration_s": 600}))
    await registry.aclose()
    assert registry.background_tasks == []
    assert registry.announcements.empty()
