"""@tool builds a function's schema from its signature and docstring."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, model_validator

from assistant.events import ToolCall
from assistant.tools import ToolContext, ToolRegistry, tool, tool_definition


def schema_of(func: Any) -> dict[str, Any]:
    definition = tool_definition(func)
    assert definition is not None
    return definition.spec.parameters


class Color(enum.Enum):
    """Light colours."""

    WARM = "warm"
    COLD = "cold"


class Schedule(BaseModel):
    """When something happens."""

    hour: int = Field(ge=0, le=23)
    days: list[str] = Field(default_factory=list, description="Weekday names.")


def test_plain_types_and_defaults() -> None:
    """Hints map to JSON types; parameters without defaults are required."""

    @tool
    def f(name: str, count: int, ratio: float, loud: bool = False) -> None:
        """Do it."""

    assert schema_of(f) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "loud": {"type": "boolean", "default": False},
        },
        "required": ["name", "count", "ratio"],
        "additionalProperties": False,
    }


def test_google_docstring_describes_function_and_arguments() -> None:
    """The summary describes the tool; Args: entries (even wrapped) describe arguments."""

    @tool
    def f(room: str, level: int = 3) -> None:
        """Dim the lights of a room.

        Longer explanation on a second paragraph.

        Args:
            room: Which room,
                for example the kitchen.
            level (int): How dim, 1 to 5.

        Returns:
            Nothing useful.
        """

    spec = tool_definition(f).spec  # type: ignore[union-attr]
    assert spec.description == "Dim the lights of a room. Longer explanation on a second paragraph."
    assert spec.parameters["properties"]["room"]["description"] == (
        "Which room, for example the kitchen."
    )
    assert spec.parameters["properties"]["level"]["description"] == "How dim, 1 to 5."


def test_sphinx_docstring_describes_arguments() -> None:
    """:param name: lines describe arguments too."""

    @tool
    def f(room: str) -> None:
        """Open the blinds.

        :param room: The room whose blinds open.
        :returns: nothing.
        """

    assert schema_of(f)["properties"]["room"]["description"] == "The room whose blinds open."


def test_literal_becomes_enum() -> None:
    """A Literal lists its allowed values."""

    @tool
    def f(state: Literal["on", "off"]) -> None:
        """Switch."""

    assert schema_of(f)["properties"]["state"] == {"type": "string", "enum": ["on", "off"]}


def test_enum_is_inlined_and_converted() -> None:
    """An Enum parameter shows its values and the function receives the member."""

    @tool
    def f(color: Color) -> str:
        """Set the colour."""
        return repr(color)

    assert schema_of(f)["properties"]["color"] == {
        "type": "string",
        "enum": ["warm", "cold"],
        "description": "Light colours.",
    }
    kwargs = tool_definition(f).call_kwargs({"color": "cold"})  # type: ignore[union-attr]
    assert kwargs == {"color": Color.COLD}


def test_pydantic_model_is_inlined_and_converted() -> None:
    """A pydantic model parameter becomes a nested object; the function gets a model instance."""

    @tool
    def f(schedule: Schedule) -> None:
        """Plan it."""

    assert schema_of(f)["properties"]["schedule"] == {
        "type": "object",
        "description": "When something happens.",
        "properties": {
            "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            "days": {"type": "array", "items": {"type": "string"}, "description": "Weekday names."},
        },
        "required": ["hour"],
    }
    kwargs = tool_definition(f).call_kwargs({"schedule": {"hour": 7}})  # type: ignore[union-attr]
    assert kwargs == {"schedule": Schedule(hour=7)}


def test_optional_with_none_default_is_a_plain_optional_argument() -> None:
    """`x: str | None = None` is an optional string, not an anyOf with null."""

    @tool
    def f(note: str | None = None) -> None:
        """Note."""

    assert schema_of(f) == {
        "type": "object",
        "properties": {"note": {"type": "string"}},
        "additionalProperties": False,
    }


def test_annotated_constraints_are_kept() -> None:
    """Field constraints in Annotated show up as JSON Schema keywords."""

    @tool
    def f(percent: Annotated[int, Field(ge=0, le=100, description="Brightness.")]) -> None:
        """Dim."""

    assert schema_of(f)["properties"]["percent"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "description": "Brightness.",
    }


def test_lists_and_dicts() -> None:
    """Containers describe their items."""

    @tool
    def f(names: list[str], scores: dict[str, float]) -> None:
        """Rank."""

    props = schema_of(f)["properties"]
    assert props["names"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "number"}}


def test_context_parameter_is_hidden() -> None:
    """A ToolContext parameter is injected, not shown to the model."""

    @tool
    async def f(context: ToolContext, room: str) -> None:
        """Do it."""

    assert list(schema_of(f)["properties"]) == ["room"]
    assert tool_definition(f).context_param == "context"  # type: ignore[union-attr]


def test_parameter_names_that_clash_with_pydantic_work() -> None:
    """Arguments may be called json, schema or model_id."""

    @tool
    def f(json: str, schema: int, model_id: str) -> None:
        """Odd names."""

    assert list(schema_of(f)["properties"]) == ["json", "schema", "model_id"]
    kwargs = tool_definition(f).call_kwargs(  # type: ignore[union-attr]
        {"json": "a", "schema": 1, "model_id": "m"}
    )
    assert kwargs == {"json": "a", "schema": 1, "model_id": "m"}


def test_options_override_name_and_behaviour() -> None:
    """name, description, confirm and timeout_s come from the decorator's options."""

    @tool(name="open_door", description="Open a door.", confirm=True, timeout_s=2.5)
    def f() -> None:
        """Ignored summary."""

    spec = tool_definition(f).spec  # type: ignore[union-attr]
    assert (spec.name, spec.description, spec.confirm, spec.timeout_s) == (
        "open_door",
        "Open a door.",
        True,
        2.5,
    )


def test_decorated_function_still_works_as_a_function() -> None:
    """@tool returns the function unchanged."""

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add(2, 3) == 5


def test_missing_type_hint_is_refused() -> None:
    """Every argument needs a type hint, named in the error."""
    with pytest.raises(TypeError, match="parameter 'room' needs a type hint"):

        @tool
        def f(room) -> None:  # type: ignore[no-untyped-def]
            """Do it."""


def test_var_args_are_refused() -> None:
    """*args cannot be described to the model."""
    with pytest.raises(TypeError, match="'rooms'"):

        @tool
        def f(*rooms: str) -> None:
            """Do it."""


def test_invalid_name_is_refused() -> None:
    """Tool names follow the function-calling rules."""
    with pytest.raises(TypeError, match="must match"):
        tool(name="open door")(lambda: None)


async def test_registry_from_functions_runs_converted_arguments() -> None:
    """A code-built registry validates, converts and calls."""

    @tool
    def paint(color: Color, times: int = 1) -> str:
        """Paint."""
        return f"{color.name} x{times}"

    registry = ToolRegistry.from_functions([paint])
    result = await registry.execute(ToolCall("abcdefghi", "paint", {"color": "warm"}))
    assert (result.ok, result.content) == (True, '"WARM x1"')
    await registry.aclose()


class Window(BaseModel):
    """A booking window."""

    start_h: int
    end_h: int

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end_h <= self.start_h:
            raise ValueError("end_h must be after start_h")
        return self


async def test_model_validation_failure_is_an_argument_error() -> None:
    """A rule JSON Schema cannot express (a model validator) still returns 'invalid arguments'."""
    booked: list[Window] = []

    @tool
    def book(window: Window) -> None:
        """Book the room."""
        booked.append(window)

    registry = ToolRegistry.from_functions([book])
    result = await registry.execute(
        ToolCall("abcdefghi", "book", {"window": {"start_h": 9, "end_h": 8}})
    )
    await registry.aclose()
    assert not result.ok
    assert json.loads(result.content)["error"] == "invalid arguments"
    assert "end_h must be after start_h" in result.content
    assert booked == []
