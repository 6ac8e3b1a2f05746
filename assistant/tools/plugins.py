"""Tools from installed packages: the ``voxtral_assistant.tools`` entry-point group.

An entry point names a ``@tool`` function, a module (its ``@tool`` functions are taken), or a
list/tuple of ``@tool`` functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Literal

from assistant.tools.decorator import ToolDefinition, tool_definition
from assistant.tools.source import SourceMap

ENTRY_POINT_GROUP = "voxtral_assistant.tools"


def installed_plugins() -> list[EntryPoint]:
    """The entry points of the group, sorted by name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def definitions_from(obj: Any, origin: str) -> list[ToolDefinition]:
    """The ``@tool`` definitions an entry point's object provides; ``TypeError`` if none."""
    if isinstance(obj, ModuleType):
        found = [
            d
            for _, member in inspect.getmembers(obj)
            if (d := tool_definition(member)) is not None and d.func.__module__ == obj.__name__
        ]
    elif isinstance(obj, (list, tuple)):
        found = [d for item in obj if (d := tool_definition(item)) is not None]
        if len(found) != len(obj):
            raise TypeError(f"{origin}: every item of the list must be a @tool function")
    else:
        definition = tool_definition(obj)
        found = [definition] if definition else []
    if not found:
        raise TypeError(f"{origin} provides no @tool function")
    return found


def load_plugins(
    selection: Literal["all", "none"] | list[str], source: SourceMap
) -> Iterator[ToolDefinition]:
    """Load the selected plugins; a broken or missing one is a load error at ``plugins:``."""
    if selection == "none":
        return
    installed = {ep.name: ep for ep in installed_plugins()}
    if selection == "all":
        chosen = list(installed.values())
    else:
        missing = [name for name in selection if name not in installed]
        if missing:
            have = ", ".join(installed) or "none"
            raise source.error(
                ("plugins",),
                f"plugin {missing[0]!r} is not installed (installed: {have}); "
                "pip install its package or remove it from 'plugins'",
            )
        chosen = [installed[name] for name in selection]
    for ep in chosen:
        origin = f"plugin {ep.name!r} ({ep.value})"
        try:
            found = definitions_from(ep.load(), origin)
        except Exception as exc:
            raise source.error(
                ("plugins",),
                f"{origin} failed to load: {type(exc).__name__}: {exc}; fix or uninstall it, "
                "or list only the plugins you want under 'plugins:'",
            ) from None
        for definition in found:
            spec = replace(definition.spec, source=f"plugin {ep.name}: {definition.spec.source}")
            yield replace(definition, spec=spec)
