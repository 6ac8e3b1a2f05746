"""The interface every handler kind implements."""

from __future__ import annotations

from typing import Any, Protocol

from assistant.tools.context import ToolContext


class InvalidArgumentsError(Exception):
    """The arguments passed the JSON Schema but not the handler's own conversion."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Handler(Protocol):
    """Runs one tool from arguments already validated against its schema."""

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Do the work; return a JSON-able value or raise (the registry reports either)."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the registry closes."""
        ...
