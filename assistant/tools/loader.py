"""``load_tools(path)``: read ``tools.yaml``, check everything, build a ``ToolRegistry``.

Every problem is found here, before the assistant starts, and reported as one
``ToolsFileError`` naming the file, the line and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from assistant.tools.decorator import ToolDefinition, tool_definition
from assistant.tools.errors import ToolsFileError
from assistant.tools.handlers.base import Handler
from assistant.tools.handlers.python import ImportSpecError, PythonHandler, import_callable
from assistant.tools.parameters import reference_problem, required_problem
from assistant.tools.plugins import load_plugins
from assistant.tools.registry import ToolRegistry
from assistant.tools.schema import BrokerConfig, ToolConfig, ToolsFile, allowed_keys
from assistant.tools.source import Environment, Location, SourceMap, read_yaml
from assistant.tools.spec import DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT_S, ToolSpec
from assistant.tools.templating import Placeholder

log = logging.getLogger(__name__)


LOCAL_TOOLS_FILE = Path("tools.yaml")
"""Used when no tools file is configured and it exists in the working directory."""


def tools_file_to_use(configured: Path | None) -> Path:
    """The tools file a command runs with: the configured one; else ``./tools.yaml`` when
    present; else the built-in tools (``assistant/tools/builtin.yaml``, which adds every
    installed plugin)."""
    if configured is not None:
        return configured
    if LOCAL_TOOLS_FILE.is_file():
        return LOCAL_TOOLS_FILE
    return Path(str(resources.files("assistant.tools").joinpath("builtin.yaml")))


def load_configured_tools(configured: Path | None) -> ToolRegistry:
    """Load ``tools_file_to_use(configured)`` and log where the tools came from and which."""
    path = tools_file_to_use(configured)
    registry = load_tools(path)
    names = ", ".join(spec.name for spec in registry.specs) or "none"
    log.info("tools from %s: %s", path, names)
    return registry


def load_tools(path: str | Path, *, environ: Mapping[str, str] | None = None) -> ToolRegistry:
    """The registry declared by ``path`` (plus enabled plugins); ``ToolsFileError`` if broken.

    ``environ`` replaces ``os.environ`` for ``${VAR}`` lookups (tests, embedding).
    """
    path = Path(path)
    data, source = read_yaml(path)
    if not isinstance(data, dict):
        raise source.error((), "the file must be a mapping starting with 'version: 1'")
    try:
        config = ToolsFile.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc, source) from None
    env = Environment(environ)
    builder = _Builder(source, env, config.mqtt)
    tools: list[tuple[ToolSpec, Handler]] = []
    seen: dict[str, Location] = {}
    used_functions: set[int] = set()
    for index, entry in enumerate(config.tools):
        loc: Location = ("tools", index)
        spec, handler = builder.build(entry, loc)
        _check_unique(spec.name, loc, seen, source)
        if isinstance(handler, PythonHandler):
            used_functions.add(id(handler.func))
        tools.append((spec, handler))
    closers: list[Any] = []
    try:
        for index, server in enumerate(config.mcp_servers):
            from assistant.tools.handlers.mcp import mcp_tools

            loc = ("mcp_servers", index)
            mcp, built = mcp_tools(server, env, source, loc)
            closers.append(mcp)
            for spec, handler in built:
                _check_unique(spec.name, loc, seen, source, hint="give the server a 'prefix'")
                tools.append((spec, handler))
        for definition in load_plugins(config.plugins, source):
            if id(definition.func) in used_functions:
                continue  # tools.yaml already declares it, possibly with overrides
            _check_unique(definition.spec.name, ("plugins",), seen, source)
            tools.append((definition.spec, PythonHandler(definition.func, definition)))
    except BaseException:
        for mcp in closers:  # connected MCP servers (a stdio program) must not outlive a refusal
            mcp.close()
        raise
    return ToolRegistry(tools, secrets=env.secrets)


def _check_unique(
    name: str,
    loc: Location,
    seen: dict[str, Location],
    source: SourceMap,
    hint: str = "rename or remove one of them",
) -> None:
    if name in seen:
        first = source.line(seen[name])
        raise source.error(
            loc,
            f"duplicate tool name {name!r} (first declared on line {first}); "
            f"tool names must be unique: {hint}",
        )
    seen[name] = loc


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "file"


def _file_location(err: Any, source: SourceMap) -> tuple[str | int, ...]:
    """The error's location as keys of the file.

    Union members add their type name ("int", "list[int]") to pydantic's location: keep only
    the parts that are keys in the file (and the absent key of a "missing" error).
    """
    raw = tuple(err["loc"])
    kept: list[str | int] = []
    for index, part in enumerate(raw):
        if (*kept, part) in source.lines or (err["type"] == "missing" and index == len(raw) - 1):
            kept.append(part)
    return tuple(kept)


def _pydantic_error(exc: ValidationError, source: SourceMap) -> ToolsFileError:
    """The first problem in file order (one per location), with a count of the others."""
    by_location: dict[tuple[str | int, ...], Any] = {}
    for err in exc.errors():
        by_location.setdefault(_file_location(err, source), err)
    # On one line an unknown key comes first: a misspelt key explains the "missing" one.
    ordered = sorted(
        by_location.items(),
        key=lambda item: (source.line(item[0]) or 0, item[1]["type"] != "extra_forbidden"),
    )
    loc, err = ordered[0]
    kind = err["type"]
    where = _dotted(loc)
    if kind == "extra_forbidden":
        keys = allowed_keys(loc[:-1])
        message = f"{where}: unknown key {loc[-1]!r}; remove it or fix the spelling" + (
            f" (allowed here: {', '.join(keys)})" if keys else ""
        )
    elif kind == "missing":
        message = f"{where}: required key is missing; add '{loc[-1]}:'"
        if loc == ("version",):
            message = "'version' is missing; add 'version: 1' as the first line"
    elif loc == ("version",):
        message = "unsupported version; this assistant reads 'version: 1'"
    else:
        message = f"{where}: {err['msg']}"
    more = len(ordered) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return source.error(loc, message)


class _Builder:
    """Turns checked entries into specs and handlers; owns the shared MQTT publisher."""

    def __init__(self, source: SourceMap, env: Environment, broker: BrokerConfig | None) -> None:
        self.source = source
        self.env = env
        self.broker = broker
        self._publisher: Any = None

    def build(self, entry: ToolConfig, loc: Location) -> tuple[ToolSpec, Handler]:
        handler_loc = (*loc, "handler")
        definition: ToolDefinition | None = None
        handler: Handler
        if entry.handler.python is not None:
            func = self._import(entry.handler.python, (*handler_loc, "python"))
            definition = tool_definition(func)
            if definition is not None and entry.parameters is not None:
                raise self.source.error(
                    (*loc, "parameters"),
                    f"{entry.handler.python} is a @tool function: its parameters come from its "
                    "signature; remove 'parameters' here",
                )
            handler = PythonHandler(func, definition)
        name = entry.name or (definition.spec.name if definition else None)
        if name is None:
            raise self.source.error(loc, "a tool needs a 'name' (only @tool functions bring one)")
        base = definition.spec if definition else None
        parameters = entry.parameters if entry.parameters is not None else None
        if parameters is None:
            parameters = base.parameters if base else {"type": "object", "properties": {}}
        else:
            self._check_parameters(name, parameters, (*loc, "parameters"))
        description = entry.description or (base.description if base else None)
        if not description:
            raise self.source.error(
                loc, f"tool {name!r} needs a 'description' (the model reads it to choose tools)"
            )
        declared = set(parameters.get("properties", {}))
        if entry.handler.http is not None:
            from assistant.tools.handlers.http import HttpHandler

            handler = HttpHandler.from_config(
                entry.handler.http, self.env, self.source, (*handler_loc, "http")
            )
            self._check_placeholders(handler.placeholders(), declared, (*handler_loc, "http"))
        elif entry.handler.mqtt is not None:
            from assistant.tools.handlers.mqtt import MqttHandler

            handler = MqttHandler.from_config(
                entry.handler.mqtt,
                self._mqtt_publisher((*handler_loc, "mqtt")),
                self.env,
                self.source,
                (*handler_loc, "mqtt"),
            )
            self._check_placeholders(handler.placeholders(), declared, (*handler_loc, "mqtt"))
            problem = handler.topic_problem()
            if problem is not None:
                text = entry.handler.mqtt.topic
                filled = " once its ${variables} are filled in" if "${" in text else ""
                raise self.source.error(
                    (*handler_loc, "mqtt", "topic"),
                    f"tool {name!r}: the topic {text!r}{filled} {problem}",
                )
        spec = ToolSpec(
            name=name,
            description=description,
            parameters=parameters,
            confirm=entry.confirm if entry.confirm is not None else bool(base and base.confirm),
            timeout_s=entry.timeout_s or (base.timeout_s if base else DEFAULT_TIMEOUT_S),
            max_result_bytes=entry.max_result_bytes
            or (base.max_result_bytes if base else DEFAULT_MAX_RESULT_BYTES),
            kind=entry.handler.kind,
            source=f"{self.source.path}:{self.source.line(loc)}",
        )
        return spec, handler

    def _import(self, target: str, loc: Location) -> Any:
        try:
            return import_callable(target)
        except ImportSpecError as exc:
            raise self.source.error(loc, f"python handler: {exc}") from None

    def _check_parameters(self, name: str, schema: dict[str, Any], loc: Location) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            at = _dotted(tuple(exc.absolute_path))
            raise self.source.error(
                (*loc, *exc.absolute_path),
                f"parameters is not a valid JSON Schema: {exc.message}"
                + (f" (at parameters.{at})" if exc.absolute_path else "")
                + "; see https://json-schema.org/understanding-json-schema/",
            ) from None
        if schema.get("type") != "object":
            raise self.source.error(
                loc, "parameters must be a JSON Schema with 'type: object' (the arguments object)"
            )
        for check in (reference_problem, required_problem):
            found = check(schema)
            if found is not None:
                where, problem = found
                raise self.source.error(
                    (*loc, *where), f"tool {name!r}: {problem} (at parameters.{_dotted(where)})"
                )

    def _check_placeholders(
        self, placeholders: list[tuple[Placeholder, Location]], declared: set[str], loc: Location
    ) -> None:
        for placeholder, where in placeholders:
            if placeholder.name not in declared:
                raise self.source.error(
                    (*loc, *where),
                    f"template uses {{{placeholder.name}}} but the tool declares no such "
                    "argument; add it under parameters.properties or fix the name",
                )

    def _mqtt_publisher(self, loc: Location) -> Any:
        if self.broker is None:
            raise self.source.error(
                loc,
                "an mqtt handler needs the broker: add a top-level 'mqtt: {host: ..., port: ...}'",
            )
        if self._publisher is None:
            from assistant.tools.handlers.mqtt import MqttPublisher

            self._publisher = MqttPublisher.from_config(self.broker, self.env, self.source)
        return self._publisher
