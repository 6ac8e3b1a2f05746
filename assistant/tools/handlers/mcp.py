"""``mcp_servers:`` — the tools of an MCP server, each run by a call through its ``McpSource``.

``mcp_tools`` resolves one ``mcp_servers`` entry (``${VAR}`` values, the bearer token from the
variable ``token_env`` names), connects, lists the server's tools and turns each allowed one
into a ``ToolSpec`` (name with the optional prefix, the server's description and input schema)
and an ``McpToolHandler``. What the server returns becomes the tool's result: its structured
content when it gives one, else its text (parsed when it is JSON); a result the server marks
as an error raises, so the model reads it as a failed call.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from assistant.tools.context import ToolContext
from assistant.tools.decorator import NAME_PATTERN
from assistant.tools.errors import ToolsFileError
from assistant.tools.mcp_source import (
    HttpTarget,
    McpError,
    McpSource,
    McpUnavailableError,
    StdioTarget,
)
from assistant.tools.parameters import reference_problem
from assistant.tools.results import Redactor, shorten
from assistant.tools.schema import McpServerConfig
from assistant.tools.source import Environment, Location, SourceMap
from assistant.tools.spec import ToolSpec

if TYPE_CHECKING:
    from mcp.types import CallToolResult, Tool

    from assistant.tools.handlers.base import Handler

_UNUSABLE = re.compile(r"[^A-Za-z0-9_-]")


class McpToolError(McpError):
    """The server ran the tool and reported a failure (``isError``)."""


class McpToolHandler:
    """Calls one tool of an MCP server (the source is shared by all its tools)."""

    def __init__(self, source: McpSource, remote_name: str, timeout_s: float) -> None:
        self.source = source
        self.remote_name = remote_name
        """The tool's name on the server (the registry's name may carry a prefix)."""
        self.timeout_s = timeout_s

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Call the tool; its result, or ``McpError`` with the server's reason."""
        result = await self.source.call_tool(self.remote_name, arguments, self.timeout_s)
        return result_value(result, self.source.name)

    async def aclose(self) -> None:
        """Close the shared connection (safe to call from every handler)."""
        await self.source.aclose()


def result_value(result: CallToolResult, server: str) -> Any:
    """What the model reads for ``result``; ``McpToolError`` when the server flags a failure."""
    texts = [_content_text(block) for block in result.content]
    if result.is_error:
        reason = shorten(" ".join(t for t in texts if t).strip() or "no reason given", 400)
        raise McpToolError(f"the MCP server {server!r} reported an error: {reason}")
    if result.structured_content is not None:
        return result.structured_content
    if len(texts) == 1:
        try:
            parsed = json.loads(texts[0])
        except ValueError:
            return texts[0]
        return parsed if isinstance(parsed, (dict, list)) else texts[0]
    return texts


def _content_text(block: Any) -> str:
    text = getattr(block, "text", None)
    if isinstance(text, str):
        return text
    # Images, audio and resources cannot reach a text model; say what was left out.
    return f"[{getattr(block, 'type', 'unknown')} content left out]"


def mcp_tools(
    config: McpServerConfig, env: Environment, source: SourceMap, loc: Location
) -> tuple[McpSource, list[tuple[ToolSpec, Handler]]]:
    """Connect to the server of one ``mcp_servers`` entry and build its tools.

    Every problem (the server cannot be reached, an allow-listed tool it does not offer, a
    tool whose name or schema cannot be used) is a ``ToolsFileError`` at the entry's line; the
    connection is closed again then.
    """
    target = _target(config, env, source, loc)
    where = f"mcp_servers[{loc[-1]}] ({config.name!r})"
    mcp = McpSource(
        config.name,
        target,
        connect_timeout_s=config.connect_timeout_s,
        redact=Redactor(env.secrets),
    )
    try:
        offered = mcp.start()
    except McpUnavailableError as exc:
        token = f" and that {config.token_env} holds a valid token" if config.token_env else ""
        raise source.error(
            loc,
            f"{where}: {exc}; check that {target.describe()} is an MCP server and reachable"
            + token,
        ) from None
    try:
        return mcp, _specs(config, offered, mcp, source, loc, where)
    except ToolsFileError:
        mcp.close()
        raise


def _target(
    config: McpServerConfig, env: Environment, source: SourceMap, loc: Location
) -> StdioTarget | HttpTarget:
    if config.command is not None:
        return StdioTarget(
            command=env.expand(config.command, source, (*loc, "command"), secret=False),
            args=tuple(
                env.expand(arg, source, (*loc, "args", i)) for i, arg in enumerate(config.args)
            ),
            env={key: env.expand(v, source, (*loc, "env", key)) for key, v in config.env.items()},
            cwd=env.expand(config.cwd, source, (*loc, "cwd"), secret=False) if config.cwd else None,
        )
    if config.url is None:  # the schema already requires one of command and url
        raise source.error(loc, "an MCP server needs 'command' or 'url'")
    url = env.expand(config.url, source, (*loc, "url"))
    if not url.startswith(("http://", "https://")):
        raise source.error((*loc, "url"), "url must start with http:// or https://")
    headers = {k: env.expand(v, source, (*loc, "headers", k)) for k, v in config.headers.items()}
    if config.token_env:
        token = env.lookup(config.token_env, None, source, (*loc, "token_env"))
        env.secrets.add(token)
        headers["Authorization"] = f"Bearer {token}"
    return HttpTarget(url=url, headers=headers)


def _specs(
    config: McpServerConfig,
    offered: list[Tool],
    mcp: McpSource,
    source: SourceMap,
    loc: Location,
    where: str,
) -> list[tuple[ToolSpec, Handler]]:
    by_name = {tool.name: tool for tool in offered}
    wanted = config.tools if config.tools is not None else list(by_name)
    for key, names in (("tools", config.tools or []), ("confirm", config.confirm)):
        missing = [name for name in names if name not in by_name]
        if missing:
            raise source.error(
                (*loc, key),
                f"{where} offers no tool {', '.join(map(repr, missing))} "
                f"(it offers: {', '.join(sorted(by_name)) or 'none'})",
            )
    built: list[tuple[ToolSpec, Handler]] = []
    for remote in wanted:
        tool = by_name[remote]
        name = config.prefix + _UNUSABLE.sub("_", remote)
        if not NAME_PATTERN.match(name):
            raise source.error(
                loc,
                f"{where}: the tool {remote!r} cannot be named {name!r} (the model accepts "
                f"{NAME_PATTERN.pattern}); leave it out with a 'tools:' allow-list",
            )
        parameters = dict(tool.input_schema or {"type": "object", "properties": {}})
        problem = _schema_problem(parameters)
        if problem is not None:
            raise source.error(
                loc,
                f"{where}: the tool {remote!r} has an unusable input schema ({problem}); leave "
                "it out with a 'tools:' allow-list",
            )
        spec = ToolSpec(
            name=name,
            description=tool.description or tool.title or remote,
            parameters=parameters,
            confirm=remote in config.confirm,
            timeout_s=config.timeout_s,
            max_result_bytes=config.max_result_bytes,
            kind="mcp",
            source=f"{source.path}:{source.line(loc)} (MCP server {config.name!r})",
        )
        built.append((spec, McpToolHandler(mcp, remote, config.timeout_s)))
    return built


def _schema_problem(schema: dict[str, Any]) -> str | None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return str(exc.message)
    if schema.get("type") != "object":
        return "it is not 'type: object'"
    found = reference_problem(schema)
    return found[1] if found else None
