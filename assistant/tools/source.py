"""Read a YAML file into plain data plus the line of every key, and expand ``${VAR}``.

Errors found later (by pydantic, by the JSON Schema checker, by the loader) carry a path such as
``("tools", 2, "handler", "http", "url")``; ``SourceMap.line`` turns it into a line number.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assistant.tools.errors import ToolsFileError

Location = tuple[str | int, ...]

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""``${NAME}`` or ``${NAME:-default}``."""

MIN_SECRET_CHARS = 6
"""Environment values shorter than this are not scrubbed from results (too many false hits)."""


@dataclass
class SourceMap:
    """Where each value of a YAML document sits in its file."""

    path: Path
    lines: dict[Location, int] = field(default_factory=dict)

    def line(self, location: Sequence[str | int]) -> int | None:
        """The line of ``location``, or of its closest enclosing value that has one."""
        loc = tuple(location)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def error(self, location: Sequence[str | int], message: str) -> ToolsFileError:
        """A ``ToolsFileError`` pointing at ``location``."""
        return ToolsFileError(message, self.path, self.line(location))


def _record_lines(node: yaml.Node, loc: Location, lines: dict[Location, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*loc, key)
            _record_lines(value_node, child, lines)
            # The key's own line is the more useful one for a block value spanning many lines.
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*loc, index), lines)


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse ``path``; a syntax error becomes a ``ToolsFileError`` with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ToolsFileError("file does not exist; pass the path of a tools.yaml", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolsFileError(f"cannot read the file: {exc}", path) from None
    source = SourceMap(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        raise ToolsFileError(
            f"YAML syntax error: {problem}; check the indentation and quoting on this line "
            "(values containing ': ', '{' or '#' need quotes)",
            path,
            line,
        ) from None
    except yaml.YAMLError as exc:
        raise ToolsFileError(f"YAML syntax error: {exc}", path) from None
    if node is not None:
        _record_lines(node, (), source.lines)
    return data, source


class Environment:
    """Expands ``${VAR}`` from the process environment and remembers the values as secrets."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self.secrets: set[str] = set()

    def lookup(
        self,
        name: str,
        default: str | None,
        source: SourceMap,
        loc: Location,
        *,
        secret: bool = True,
    ) -> str:
        """The value of ``name``; a missing variable without a default is a load error.

        ``secret`` values are masked in results and logs; broker addresses and topics are not
        secret (masking ``127.0.0.1`` everywhere would only hide useful errors).
        """
        value = self._environ.get(name)
        if value is None:
            if default is not None:
                return default
            raise source.error(
                loc,
                f"environment variable {name} is not set; export {name}=... before starting "
                f"(or write ${{{name}:-default}} to give a default)",
            )
        if secret and len(value) >= MIN_SECRET_CHARS:
            self.secrets.add(value)
        return value

    def expand(self, text: str, source: SourceMap, loc: Location, *, secret: bool = True) -> str:
        """``text`` with every ``${VAR}`` replaced by its value."""
        return ENV_PATTERN.sub(
            lambda m: self.lookup(m.group(1), m.group(2), source, loc, secret=secret),
            text,
        )
