"""Plugins: the example package from examples/ is installed and discovered by entry point."""

from __future__ import annotations

import json

import pytest

from assistant.events import ToolCall
from assistant.tools import ENTRY_POINT_GROUP, ToolsFileError, installed_plugins, load_tools

from .conftest import WriteTools

KITCHEN_TOOLS = {"convert_units", "scale_recipe", "boil_egg"}


def test_example_plugin_is_installed_under_the_entry_point_group() -> None:
    """examples/kitchen-tools registers 'kitchen' in the voxtral_assistant.tools group."""
    kitchen = [ep for ep in installed_plugins() if ep.name == "kitchen"]
    assert kitchen, f"pip install -e examples/kitchen-tools (group {ENTRY_POINT_GROUP})"
    assert kitchen[0].value == "voxtral_kitchen.tools"


async def test_installed_plugins_are_loaded_by_default(write_tools: WriteTools) -> None:
    """Without a plugins key, every installed plugin's tools are offered and run."""
    registry = load_tools(write_tools("version: 1\n"))
    names = {spec.name for spec in registry.specs}
    assert names >= KITCHEN_TOOLS
    result = await registry.execute(
        ToolCall("plugcall1", "convert_units", {"amount": 2, "from_unit": "cup", "to_unit": "ml"})
    )
    await registry.aclose()
    assert json.loads(result.content) == {"amount": 480.0, "unit": "ml"}


def test_plugin_schema_comes_from_the_signature(write_tools: WriteTools) -> None:
    """The enum parameter of convert_units reaches the model as an enum with its description."""
    registry = load_tools(write_tools("version: 1\nplugins: [kitchen]\n"))
    spec = registry.get("convert_units")
    assert spec is not None
    assert spec.source.startswith("plugin kitchen: ")
    unit = spec.parameters["properties"]["from_unit"]
    assert unit["enum"][:3] == ["g", "kg", "oz"]
    assert unit["description"] == "The unit it is in."


async def test_plugin_model_arguments_are_converted(write_tools: WriteTools) -> None:
    """scale_recipe receives pydantic models and returns them as JSON."""
    registry = load_tools(write_tools("version: 1\nplugins: [kitchen]\n"))
    arguments = {
        "ingredients": [{"name": "flour", "amount": 200, "unit": "g"}],
        "from_servings": 2,
        "to_servings": 3,
    }
    result = await registry.execute(ToolCall("plugcall2", "scale_recipe", arguments))
    await registry.aclose()
    assert json.loads(result.content) == [{"name": "flour", "amount": 300.0, "unit": "g"}]


def test_plugins_none_loads_no_plugin(write_tools: WriteTools) -> None:
    """plugins: none keeps the registry to what the file declares."""
    registry = load_tools(write_tools("version: 1\nplugins: none\n"))
    assert registry.specs == []


def test_unknown_plugin_name_is_a_load_error(write_tools: WriteTools) -> None:
    """A listed plugin that is not installed is named with the installed ones."""
    with pytest.raises(ToolsFileError, match=r"tools.yaml:2: plugin 'garden' is not installed"):
        load_tools(write_tools("version: 1\nplugins: [garden]\n"))


def test_yaml_entry_can_reference_a_plugin_function(write_tools: WriteTools) -> None:
    """Naming a plugin's @tool function in tools.yaml overrides it once, without a duplicate."""
    path = write_tools(
        """
        version: 1
        plugins: [kitchen]
        tools:
          - handler: {python: "voxtral_kitchen.tools:convert_units"}
            confirm: true
        """
    )
    registry = load_tools(path)
    names = [spec.name for spec in registry.specs]
    assert names.count("convert_units") == 1
    spec = registry.get("convert_units")
    assert spec is not None and spec.confirm


def test_plugin_name_clash_is_a_load_error(write_tools: WriteTools) -> None:
    """A file tool with a plugin tool's name is refused."""
    path = write_tools(
        """
        version: 1
        plugins: [kitchen]
        tools:
          - name: boil_egg
            description: Another egg tool.
            handler: {python: "json:dumps"}
        """
    )
    with pytest.raises(ToolsFileError, match="duplicate tool name 'boil_egg'"):
        load_tools(path)
