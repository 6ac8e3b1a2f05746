"""``@tool``: a tool's schema from a Python function's signature and docstring.

Type hints become JSON Schema through pydantic (so ``Literal``, enums, constrained
``Annotated[..., Field(...)]`` types and pydantic models all work), defaults make arguments
optional, and the docstring's ``Args:`` section (Google style) or ``:param name:`` lines
(Sphinx style) describe each argument. A parameter annotated ``ToolContext`` is injected at call
time and hidden from the model.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, create_model

from assistant.tools.context import ToolContext
from assistant.tools.spec import DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT_S, ToolSpec

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__voxtral_tool__"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What OpenAI and Mistral accept as a function name."""


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A decorated function with everything needed to call it from validated JSON arguments."""

    spec: ToolSpec
    func: Callable[..., Any]
    arguments_model: type[BaseModel]
    """Turns JSON arguments into Python values (enums, models) before the call."""
    field_names: dict[str, str]
    """Model field name to the function's parameter name."""
    context_param: str | None = None

    def call_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for ``func``; raises pydantic's ``ValidationError`` on bad input."""
        parsed = self.arguments_model.model_validate(arguments)
        return {param: getattr(parsed, field) for field, param in self.field_names.items()}


@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> Callable[[F], F]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> Any:
    """Mark a function (sync or async) as a tool; the function itself is returned unchanged.

    Use bare (``@tool``) or with options (``@tool(confirm=True, timeout_s=5)``). The schema is
    built at decoration time, so a signature that cannot be described fails at import.
    """

    def decorate(fn: F) -> F:
        definition = build_definition(
            fn,
            name=name,
            description=description,
            confirm=confirm,
            timeout_s=timeout_s,
            max_result_bytes=max_result_bytes,
        )
        setattr(fn, ATTRIBUTE, definition)
        return fn

    if func is not None:
        return decorate(func)
    return decorate


def tool_definition(obj: object) -> ToolDefinition | None:
    """The definition attached by ``@tool``, or ``None`` for anything else."""
    definition = getattr(obj, ATTRIBUTE, None)
    return definition if isinstance(definition, ToolDefinition) else None


def build_definition(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    source: str | None = None,
) -> ToolDefinition:
    """Describe ``func`` as a tool; ``TypeError`` names the parameter that cannot be described."""
    tool_name = name or func.__name__
    qualname = f"{func.__module__}.{func.__qualname__}"
    if not NAME_PATTERN.match(tool_name):
        raise TypeError(f"{qualname}: tool name {tool_name!r} must match {NAME_PATTERN.pattern}")
    summary, arg_docs = parse_docstring(inspect.getdoc(func) or "")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise TypeError(f"{qualname}: cannot resolve a type hint: {exc}") from None
    fields: dict[str, Any] = {}
    field_names: dict[str, str] = {}
    context_param = None
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"{qualname}: parameter {param.name!r} must be a plain or keyword-only "
                "parameter (tools are called with keyword arguments)"
            )
        hint = hints.get(param.name, inspect.Parameter.empty)
        if hint is ToolContext:
            context_param = param.name
            continue
        if hint is inspect.Parameter.empty:
            raise TypeError(f"{qualname}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is inspect.Parameter.empty else param.default
        # Prefixed field names: a parameter may be called "json" or "model_id" without clashing
        # with pydantic's own attributes; the alias keeps the public name in the schema.
        field = f"p_{param.name}"
        # Only a docstring entry may override a description given in Annotated[..., Field()].
        if param.name in arg_docs:
            info = Field(default, alias=param.name, description=arg_docs[param.name])
        else:
            info = Field(default, alias=param.name)
        fields[field] = (hint, info)
        field_names[field] = param.name
    model = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid", populate_by_name=False),
        **fields,
    )
    try:
        raw_schema = model.model_json_schema()
    except Exception as exc:
        raise TypeError(f"{qualname}: cannot build a JSON Schema: {exc}") from None
    spec = ToolSpec(
        name=tool_name,
        description=description or summary or tool_name.replace("_", " "),
        parameters=clean_schema(raw_schema, qualname),
        confirm=confirm,
        timeout_s=timeout_s,
        max_result_bytes=max_result_bytes,
        kind="python",
        source=source or qualname,
    )
    return ToolDefinition(spec, func, model, field_names, context_param)


# --- docstrings ------------------------------------------------------------------------------

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Raises|Yields|Examples?|Notes?):\s*$")
_GOOGLE_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ARG = re.compile(r"^:param\s+(?:[\w\[\], |.]+\s+)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (text before any section) and per-argument descriptions."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for raw in doc.splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        header = _SECTION.match(line)
        sphinx = _SPHINX_ARG.match(line)
        google = _GOOGLE_ARG.match(line)
        if header:
            section, current, arg_indent = header.group(1), None, None
        elif sphinx:
            section, current = "sphinx", sphinx.group(1)
            args[current] = sphinx.group(2).strip()
        elif line.startswith(":"):
            section, current = "sphinx-other", None
        elif section is None:
            summary.append(line)
        elif not line:
            continue
        elif (
            section in ("Args", "Arguments", "Parameters")
            and google
            and (arg_indent is None or indent <= arg_indent)
        ):
            arg_indent = indent
            current = google.group(1).lstrip("*")
            args[current] = google.group(2).strip()
        elif section in ("Args", "Arguments", "Parameters", "sphinx") and current is not None:
            args[current] = f"{args[current]} {line}".strip()
    return " ".join(" ".join(summary).split()), args


# --- schema clean-up -------------------------------------------------------------------------

_DATA_KEYWORDS = frozenset({"default", "enum", "const", "examples"})
_NAME_MAPS = frozenset({"properties", "patternProperties"})


def clean_schema(schema: dict[str, Any], owner: str = "tool") -> dict[str, Any]:
    """Make pydantic's schema model-friendly: inline ``$ref``s, drop titles, plain optionals."""
    defs = schema.get("$defs", {})
    cleaned = _clean(schema, defs, frozenset(), owner)
    cleaned.setdefault("properties", {})
    return dict(cleaned)


def _clean(node: Any, defs: dict[str, Any], seen: frozenset[str], owner: str) -> Any:
    if isinstance(node, list):
        return [_clean(item, defs, seen, owner) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"].rsplit("/", 1)[-1]
        if ref in seen:
            raise TypeError(f"{owner}: recursive type {ref!r} cannot be described to the model")
        target = _clean(defs[ref], defs, seen | {ref}, owner)
        rest = _clean({k: v for k, v in node.items() if k != "$ref"}, defs, seen, owner)
        return {**target, **rest}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key in _DATA_KEYWORDS:
            out[key] = value
        elif key in _NAME_MAPS:
            out[key] = {name: _clean(sub, defs, seen, owner) for name, sub in value.items()}
        else:
            out[key] = _clean(value, defs, seen, owner)
    # ``x: T | None = None`` is simply an optional ``T`` to the model.
    if "anyOf" in out and "default" in out and out["default"] is None:
        others = [s for s in out["anyOf"] if s != {"type": "null"}]
        if len(others) == 1:
            rest = {k: v for k, v in out.items() if k not in ("anyOf", "default")}
            return {**others[0], **rest}
    return out
