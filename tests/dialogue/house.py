"""A small house of tools for the dialogue's tests; every handler records each call it runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from assistant.conversation.dialogue import Dialogue
from assistant.events import DialogueEvent
from assistant.tools import ToolContext, ToolRegistry, tool


class House:
    """Lights, a door lock, a thermostat and a few misbehaving tools, all recording their runs.

    ``hold`` makes ``slow_switch`` wait until ``release()``; the gate belongs to the running loop.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, dict[str, Any]]] = []
        """(call id, tool name, arguments) of every handler run, in start order."""
        self.started = asyncio.Event()
        self._gate = asyncio.Event()
        self._overlap = asyncio.Event()
        self.active = 0
        self.max_active = 0
        self.expected_overlap = 1
        """How many set_light calls a test expects to run at once (each waits for them)."""
        self.tools = self._registry()

    def release(self) -> None:
        """Let held ``slow_switch`` calls finish."""
        self._gate.set()

    def runs_per_call(self) -> Counter[str]:
        """How many times a handler ran for each call id."""
        return Counter(call_id for call_id, _, _ in self.runs)

    def _ran(self, context: ToolContext, **arguments: Any) -> None:
        self.runs.append((context.call.id, context.call.name, arguments))

    def _registry(self) -> ToolRegistry:
        house = self

        @tool
        async def set_light(room: str, state: str, context: ToolContext) -> dict[str, str]:
            """Turn the light of a room on or off."""
            house._ran(context, room=room, state=state)
            house.active += 1
            house.max_active = max(house.max_active, house.active)
            if house.active >= house.expected_overlap:
                house._overlap.set()
            # Wait (bounded) until the expected number of calls run at once: they overlap only
            # if the dialogue runs them concurrently; one after another, this times out instead.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(house._overlap.wait(), timeout=2.0)
            house.active -= 1
            return {"room": room, "state": state}

        @tool(confirm=True)
        def unlock_door(door: str, context: ToolContext) -> dict[str, str]:
            """Unlock a door of the house. Only on the owner's request."""
            house._ran(context, door=door)
            return {"door": door, "locked": "no"}

        @tool
        def read_thermostat(context: ToolContext) -> dict[str, float]:
            """The living room temperature."""
            house._ran(context)
            raise OSError("the thermostat does not answer")

        @tool(timeout_s=0.3)
        async def stuck_blinds(context: ToolContext) -> None:
            """Close the blinds (the motor is stuck)."""
            house._ran(context)
            await asyncio.sleep(30)

        @tool
        async def slow_switch(name: str, context: ToolContext) -> dict[str, str]:
            """Flip a switch that takes its time."""
            house._ran(context, name=name)
            house.started.set()
            await house._gate.wait()
            return {"switch": name, "state": "flipped"}

        return ToolRegistry.from_functions(
            [set_light, unlock_door, read_thermostat, stuck_blinds, slow_switch]
        )


async def turn(dialogue: Dialogue) -> list[DialogueEvent]:
    """Run one response to the end and return its events."""
    return [event async for event in dialogue.respond()]
