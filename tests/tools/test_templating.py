"""Templates fill only declared arguments, escaped for where they land."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assistant.tools import ToolsFileError
from assistant.tools.source import Environment, SourceMap
from assistant.tools.templating import (
    Template,
    TemplateError,
    escape_topic_level,
    escape_url_component,
    parse_structure,
    render_structure,
)

SOURCE = SourceMap(Path("tools.yaml"))


def parse(text: str, environ: dict[str, str] | None = None) -> Template:
    return Template.parse(text, Environment(environ or {}), SOURCE, ())


def structure(value: Any, arguments: dict[str, Any]) -> Any:
    return render_structure(parse_structure(value, Environment({}), SOURCE, ()), arguments)


def test_url_value_cannot_leave_its_path_segment() -> None:
    """Slashes, dots, '?' and '#' in a value are percent-encoded into one path segment."""
    url = parse("http://h/api/rooms/{room}/lights")
    rendered = url.render({"room": "kitchen/../../admin?x=1#top"}, escape_url_component)
    assert rendered == "http://h/api/rooms/kitchen%2F..%2F..%2Fadmin%3Fx%3D1%23top/lights"


def test_url_value_cannot_add_query_parameters() -> None:
    """'&' and '=' in a query value are encoded, so no parameter can be smuggled in."""
    url = parse("http://h/search?q={query}&lang=en")
    rendered = url.render({"query": "tea&admin=1"}, escape_url_component)
    assert rendered == "http://h/search?q=tea%26admin%3D1&lang=en"


def test_topic_value_stays_one_level() -> None:
    """MQTT separators and wildcards in a value are encoded."""
    topic = parse("home/light/{room}/set")
    rendered = topic.render({"room": "a/b/+/#"}, escape_topic_level)
    assert rendered == "home/light/a%2Fb%2F%2B%2F%23/set"


def test_empty_topic_level_is_refused() -> None:
    """An empty value would collapse a topic level."""
    with pytest.raises(TemplateError):
        escape_topic_level("")


def test_structure_keeps_argument_types() -> None:
    """A value that is exactly one placeholder keeps its JSON type."""
    body = {"entity": "light.{room}", "brightness": "{level}", "on": "{on}"}
    assert structure(body, {"room": "hall", "level": 128, "on": True}) == {
        "entity": "light.hall",
        "brightness": 128,
        "on": True,
    }


def test_structure_value_cannot_inject_structure() -> None:
    """Quotes and braces in a value stay inside its string."""
    body = {"state": "{state}"}
    assert structure(body, {"state": '", "admin": true, "x": "'}) == {
        "state": '", "admin": true, "x": "'
    }


def test_structure_leaves_out_absent_optional_arguments() -> None:
    """A key whose whole value is an absent argument is omitted."""
    assert structure({"state": "{state}", "brightness": "{b}"}, {"state": "ON"}) == {"state": "ON"}


def test_filters_change_case() -> None:
    """{name|upper} upper-cases the value."""
    assert parse("{state|upper}").render({"state": "on"}) == "ON"


def test_double_braces_are_literal() -> None:
    """{{ and }} stand for braces."""
    assert parse("{{x}} {name}").render({"name": "n"}) == "{x} n"


def test_environment_values_are_resolved_at_parse_time() -> None:
    """${VAR} becomes literal text; a brace inside the value is not a placeholder."""
    template = parse("${BASE}/x/{id}", {"BASE": "http://h:1/{odd}"})
    assert template.render({"id": "7"}) == "http://h:1/{odd}/x/7"


def test_environment_default_applies_when_unset() -> None:
    """${VAR:-default} falls back to the default."""
    assert parse("${PREFIX:-homeassistant}/light").render({}) == "homeassistant/light"


def test_missing_argument_in_text_is_an_error() -> None:
    """A string template cannot be filled without its argument."""
    with pytest.raises(TemplateError, match="'room'"):
        parse("a/{room}").render({})


def test_stray_brace_is_a_load_error() -> None:
    """An unmatched brace is reported with the fix."""
    with pytest.raises(ToolsFileError, match="literal braces"):
        parse("a/{room")


def test_unknown_filter_is_a_load_error() -> None:
    """Only the known filters are accepted."""
    with pytest.raises(ToolsFileError, match="unknown filter"):
        parse("{room|title}")
