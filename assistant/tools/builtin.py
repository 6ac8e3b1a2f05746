"""The tools shipped with the assistant (referenced from the default ``tools.yaml``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from assistant.tools.context import ToolContext
from assistant.tools.decorator import tool

MAX_TIMER_S = 24 * 3600


def _now(timezone: str | None) -> dt.datetime:
    if not timezone:
        return dt.datetime.now().astimezone()
    try:
        return dt.datetime.now(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Paris'"
        ) from None


@tool
def get_time(timezone: str | None = None) -> dict[str, Any]:
    """Get the current local date and time.

    Args:
        timezone: IANA time zone such as 'Europe/Paris'; the assistant's own zone if omitted.
    """
    now = _now(timezone)
    return {
        "time": now.strftime("%H:%M"),
        "date": now.date().isoformat(),
        "weekday": now.strftime("%A"),
        "timezone": timezone or now.tzname(),
        "iso": now.isoformat(timespec="seconds"),
    }


def _timer_task(label: str) -> str:
    return f"timer:{label}"


@tool
async def set_timer(
    context: ToolContext,
    duration_s: Annotated[float, Field(ge=1, le=MAX_TIMER_S)],
    label: str = "timer",
) -> dict[str, Any]:
    """Start a timer or reminder that announces itself when it runs out.

    Args:
        duration_s: How long until it fires, in seconds (5 minutes = 300).
        label: What it is for, e.g. 'pasta' or 'call mum'; one timer per label.
    """
    context.tasks.cancel(context.task_name(_timer_task(label)))
    fires_at = dt.datetime.now().astimezone() + dt.timedelta(seconds=duration_s)

    async def fire() -> None:
        await asyncio.sleep(duration_s)
        what = "Your timer" if label == "timer" else f"Your {label} timer"
        context.announce(f"{what} is done.", source="set_timer")

    context.tasks.start(fire(), name=context.task_name(_timer_task(label)))
    return {"label": label, "duration_s": duration_s, "fires_at": fires_at.strftime("%H:%M:%S")}


@tool
async def cancel_timer(context: ToolContext, label: str = "timer") -> dict[str, Any]:
    """Cancel a running timer.

    Args:
        label: The label the timer was set with.
    """
    if context.tasks.cancel(context.task_name(_timer_task(label))) == 0:
        ours = context.task_name(_timer_task(""))
        running = [n.removeprefix(ours) for n in context.tasks.names() if n.startswith(ours)]
        raise LookupError(
            f"no timer called {label!r} is running"
            + (f" (running: {', '.join(running)})" if running else "")
        )
    return {"cancelled": label}
