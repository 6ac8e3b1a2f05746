"""Templates that fill declared arguments into URLs, topics, text and JSON structures.

``{name}`` is an argument (``{name|upper}``/``{name|lower}`` change its case), ``${VAR}`` an
environment variable resolved once at load time, ``{{``/``}}`` literal braces. Argument values
are escaped for where they land, so a spoken value cannot change the shape of what it fills:
one URL component (percent-encoded), one MQTT topic level (``/ + #`` encoded), or one JSON value
(structures are filled as data, never as text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from assistant.tools.source import ENV_PATTERN, Environment, Location, SourceMap

FILTERS: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower}

_TOKEN = re.compile(
    r"(?P<lbrace>\{\{)|(?P<rbrace>\}\})|(?P<env>\$\{[^}]*\})"
    r"|\{(?P<arg>[A-Za-z_][A-Za-z0-9_]*)(?:\|(?P<filter>[a-z]+))?\}|(?P<stray>[{}])"
)
_TOPIC_UNSAFE = re.compile(r"[/+#%\x00]")


class TemplateError(Exception):
    """A template cannot be filled from the given arguments (a needed one is missing)."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``{name}`` in a template."""

    name: str
    filter: str | None = None

    def value(self, arguments: Mapping[str, Any]) -> Any:
        """The argument's value with the filter applied; ``KeyError`` if it is absent."""
        value = arguments[self.name]
        if self.filter:
            value = FILTERS[self.filter](_as_text(value))
        return value


Part = str | Placeholder


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed string template: literal text and placeholders."""

    parts: tuple[Part, ...]

    @classmethod
    def parse(
        cls,
        text: str,
        env: Environment,
        source: SourceMap,
        loc: Location,
        *,
        secret: bool = True,
    ) -> Template:
        """Parse ``text``; environment variables are resolved now, into literal text."""
        parts: list[Part] = []
        pos = 0
        for match in _TOKEN.finditer(text):
            parts.append(text[pos : match.start()])
            pos = match.end()
            kind = match.lastgroup
            if kind == "lbrace":
                parts.append("{")
            elif kind == "rbrace":
                parts.append("}")
            elif kind == "env":
                env_match = ENV_PATTERN.fullmatch(match.group())
                if env_match is None:
                    raise source.error(loc, f"bad environment reference {match.group()!r}")
                name, default = env_match.group(1), env_match.group(2)
                parts.append(env.lookup(name, default, source, loc, secret=secret))
            elif kind == "stray":
                raise source.error(
                    loc,
                    f"unmatched {match.group()!r} in template {text!r}; "
                    "write {name} for an argument or {{ and }} for literal braces",
                )
            else:
                filt = match.group("filter")
                if filt is not None and filt not in FILTERS:
                    raise source.error(
                        loc, f"unknown filter |{filt}; use one of: {', '.join(FILTERS)}"
                    )
                parts.append(Placeholder(match.group("arg"), filt))
        parts.append(text[pos:])
        return cls(tuple(_join_literals(parts)))

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        """Every argument reference, in order."""
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def single(self) -> Placeholder | None:
        """The placeholder if the template is exactly one ``{name}`` and nothing else."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Placeholder):
            return self.parts[0]
        return None

    def render(self, arguments: Mapping[str, Any], escape: Callable[[str], str] = str) -> str:
        """Fill the template; each argument value goes through ``escape``."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = part.value(arguments)
            except KeyError:
                raise TemplateError(f"argument {part.name!r} is required here") from None
            out.append(escape(_as_text(value)))
        return "".join(out)


def _join_literals(parts: list[Part]) -> Iterator[Part]:
    buffer = ""
    for part in parts:
        if isinstance(part, str):
            buffer += part
            continue
        if buffer:
            yield buffer
            buffer = ""
        yield part
    if buffer:
        yield buffer


def escape_url_component(value: str) -> str:
    """Percent-encode everything but unreserved characters: the value stays one component."""
    return quote(value, safe="")


def escape_topic_level(value: str) -> str:
    """Keep ``value`` inside one MQTT topic level (no ``/``, no wildcards)."""
    if not value:
        raise TemplateError("an empty value cannot fill an MQTT topic level")
    return _TOPIC_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", value)


# --- structures (JSON bodies, MQTT JSON payloads) -------------------------------------------


def parse_structure(value: Any, env: Environment, source: SourceMap, loc: Location) -> Any:
    """Turn every string inside ``value`` (a YAML mapping/list/scalar) into a ``Template``."""
    if isinstance(value, str):
        return Template.parse(value, env, source, loc)
    if isinstance(value, dict):
        return {str(k): parse_structure(v, env, source, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [parse_structure(v, env, source, (*loc, i)) for i, v in enumerate(value)]
    return value


_MISSING = object()


def render_structure(value: Any, arguments: Mapping[str, Any]) -> Any:
    """Fill a parsed structure as data: ``"{n}"`` keeps the argument's JSON type.

    A key or list item that is exactly one absent (optional) argument is left out.
    """
    result = _render(value, arguments)
    return None if result is _MISSING else result


def _render(value: Any, arguments: Mapping[str, Any]) -> Any:
    if isinstance(value, Template):
        single = value.single
        if single is not None:
            return single.value(arguments) if single.name in arguments else _MISSING
        return value.render(arguments)
    if isinstance(value, dict):
        out = {k: _render(v, arguments) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _MISSING}
    if isinstance(value, list):
        return [v for v in (_render(v, arguments) for v in value) if v is not _MISSING]
    return value


def structure_placeholders(value: Any) -> Iterator[Placeholder]:
    """Every placeholder inside a parsed structure."""
    if isinstance(value, Template):
        yield from value.placeholders
    elif isinstance(value, dict):
        for item in value.values():
            yield from structure_placeholders(item)
    elif isinstance(value, list):
        for item in value:
            yield from structure_placeholders(item)
