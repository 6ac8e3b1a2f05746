"""The ``tools.yaml`` file format (version 1), as pydantic models.

These models check the shape of the file; ``loader.py`` then resolves what needs the outside
world (imports, environment variables, JSON Schema checks) and builds the handlers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from assistant.tools.decorator import NAME_PATTERN

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class BrokerConfig(_Strict):
    """The MQTT broker that ``mqtt`` handlers publish to (top-level ``mqtt:``)."""

    host: str = Field("localhost", description="Host name or address; ${VAR} allowed.")
    port: int | str = Field(1883, description="TCP port (8883 for TLS); ${VAR} allowed.")
    username: str | None = None
    password_env: str | None = Field(
        None, description="Name of the environment variable holding the password."
    )
    tls: bool = False
    ca_file: str | None = Field(None, description="CA bundle for TLS (default: system CAs).")
    client_id: str | None = None
    keepalive_s: int = Field(60, ge=5, le=3600)


class HttpHandlerConfig(_Strict):
    """``http:`` — one request per call; the response body is the result."""

    method: HttpMethod = "GET"
    url: str = Field(description="Template: {arg} in the path or query, ${VAR} anywhere.")
    headers: dict[str, str] = Field(default_factory=dict, description="${VAR} allowed, no {arg}.")
    json_body: Any = Field(None, alias="json", description="JSON body; '{arg}' keeps the type.")
    expect_status: int | list[int] | None = Field(None, description="Default: any 2xx.")
    max_response_bytes: int = Field(65_536, ge=1, le=16 * 1024 * 1024)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MqttHandlerConfig(_Strict):
    """``mqtt:`` — publish one message per call to the top-level broker."""

    topic: str = Field(description="Template; each {arg} fills (part of) one topic level.")
    payload: Any = Field("", description="A mapping/list (sent as JSON) or a text template.")
    qos: Literal[0, 1, 2] = 0
    retain: bool = False


class HandlerConfig(_Strict):
    """Exactly one of ``python``, ``http``, ``mqtt``."""

    python: str | None = Field(None, description="'package.module:function'.")
    http: HttpHandlerConfig | None = None
    mqtt: MqttHandlerConfig | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HandlerConfig:
        given = [k for k in ("python", "http", "mqtt") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a handler needs exactly one of python, http or mqtt"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> Literal["python", "http", "mqtt"]:
        """Which handler kind this is."""
        if self.python is not None:
            return "python"
        return "http" if self.http is not None else "mqtt"


SERVER_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
PREFIX_PATTERN = r"^[A-Za-z0-9_-]{0,32}$"


class McpServerConfig(_Strict):
    """One entry under ``mcp_servers:``: an MCP server whose tools join the registry.

    Exactly one of ``command`` (a program spoken to over its stdin/stdout) or ``url`` (a
    streamable HTTP endpoint).
    """

    name: str = Field(pattern=SERVER_NAME_PATTERN, description="Names the server in logs.")
    command: str | None = Field(None, description="stdio: the program to start.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments; ${VAR}.")
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: extra environment for it; ${VAR} allowed."
    )
    cwd: str | None = Field(None, description="stdio: its working directory.")
    url: str | None = Field(
        None, description="Streamable HTTP endpoint, e.g. http://ha:8123/api/mcp."
    )
    token_env: str | None = Field(
        None, description="HTTP: the NAME of the environment variable holding a bearer token."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP: ${VAR} allowed.")
    prefix: str = Field("", pattern=PREFIX_PATTERN, description="Put before every tool name.")
    tools: list[str] | None = Field(
        None, description="Allow-list of the server's tool names (default: all of them)."
    )
    confirm: list[str] = Field(
        default_factory=list, description="Tools that need a spoken yes before they run."
    )
    timeout_s: float = Field(10.0, gt=0, le=3600, description="Per call.")
    connect_timeout_s: float = Field(15.0, gt=0, le=300)
    max_result_bytes: int = Field(16_384, ge=64, le=1024 * 1024)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of 'command' (stdio) or 'url' (HTTP)")
        if self.url is None and (self.token_env or self.headers):
            raise ValueError("'token_env' and 'headers' apply to an HTTP server ('url') only")
        if self.command is None and (self.args or self.env or self.cwd):
            raise ValueError("'args', 'env' and 'cwd' apply to a stdio server ('command') only")
        return self


class ToolConfig(_Strict):
    """One entry under ``tools:``."""

    name: str | None = Field(None, pattern=NAME_PATTERN.pattern)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments.")
    handler: HandlerConfig
    timeout_s: float | None = Field(None, gt=0, le=3600, description="Default 10.")
    confirm: bool | None = Field(None, description="Ask for a spoken yes first.")
    max_result_bytes: int | None = Field(None, ge=64, le=1024 * 1024)


class ToolsFile(_Strict):
    """The whole ``tools.yaml``."""

    version: Literal[1]
    mqtt: BrokerConfig | None = None
    plugins: Literal["all", "none"] | list[str] = Field(
        "all", description="Entry-point plugins to load: all, none, or a list of names."
    )
    tools: list[ToolConfig] = Field(default_factory=list)
    mcp_servers: list[McpServerConfig] = Field(
        default_factory=list, description="MCP servers whose tools join the registry."
    )


def allowed_keys(location: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at ``location`` accepts (for "unknown key" hints)."""
    model: type[BaseModel] = ToolsFile
    for part in location:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if field is None:
            return []
        nested = _model_in(field.annotation)
        if nested is None:
            return []
        model = nested
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
