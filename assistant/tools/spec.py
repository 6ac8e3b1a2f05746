"""``ToolSpec``: what the model is told about a tool and how it is run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESULT_BYTES = 16_384
"""A result bigger than this becomes an error: it would crowd the model's context."""

HandlerKind = Literal["python", "http", "mqtt", "mcp"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: its function schema plus the rules for running it."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments object."""
    confirm: bool = False
    """Ask the user for a spoken yes before running (the dialogue enforces it)."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    kind: HandlerKind = "python"
    source: str = ""
    """Where it was declared: ``tools.yaml:12``, a plugin entry point, or a function."""

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI/Mistral function-tool dict."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }
