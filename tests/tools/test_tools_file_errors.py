"""A broken tools.yaml refuses to load with an error naming the file, the line and the fix."""

from __future__ import annotations

import json

import pytest

from assistant.events import ToolCall
from assistant.tools import ToolsFileError, load_tools

from .conftest import WriteTools


def load_error(write_tools: WriteTools, text: str, environ: dict[str, str] | None = None):
    path = write_tools(text)
    with pytest.raises(ToolsFileError) as caught:
        load_tools(path, environ=environ or {})
    error = caught.value
    assert error.path == path
    assert str(error).startswith(f"{path}:")
    return error


def test_yaml_syntax_error(write_tools: WriteTools) -> None:
    """Bad YAML is reported at its line with a hint about quoting."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: [unclosed
        """,
    )
    assert error.line == 5
    assert "YAML syntax error" in error.reason


def test_unknown_key(write_tools: WriteTools) -> None:
    """A misspelt key is named, with the keys allowed there."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            handler:
              http: {methd: GET, url: "http://h/x"}
        """,
    )
    assert error.line == 6
    assert "unknown key 'methd'" in error.reason
    assert "method" in error.reason and "url" in error.reason


def test_invalid_json_schema(write_tools: WriteTools) -> None:
    """parameters that are not a JSON Schema point at the bad keyword."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            parameters:
              type: object
              properties:
                room: {type: strin}
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 8
    assert "not a valid JSON Schema" in error.reason
    assert "properties.room.type" in error.reason


def test_parameters_must_describe_an_object(write_tools: WriteTools) -> None:
    """The arguments are an object; another top-level type is refused."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            parameters: {type: string}
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 5
    assert "type: object" in error.reason


def test_duplicate_names(write_tools: WriteTools) -> None:
    """The second tool of a name is reported, with the line of the first."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: same
            description: one
            handler: {python: "json:dumps"}
          - name: same
            description: two
            handler: {python: "json:loads"}
        """,
    )
    assert error.line == 7
    assert "duplicate tool name 'same' (first declared on line 4)" in error.reason


def test_python_handler_module_cannot_be_imported(write_tools: WriteTools) -> None:
    """A module that does not exist is named, with the fix."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            handler:
              python: "no_such_package.lights:switch"
        """,
    )
    assert error.line == 6
    assert "cannot import module 'no_such_package.lights'" in error.reason
    assert "installed" in error.reason


def test_python_handler_attribute_missing(write_tools: WriteTools) -> None:
    """A function name that the module lacks is named."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            handler: {python: "json:no_such_function"}
        """,
    )
    assert error.line == 5
    assert "has no attribute 'no_such_function'" in error.reason


def test_missing_environment_variable(write_tools: WriteTools) -> None:
    """An unset ${VAR} is named with how to set it."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            handler:
              http:
                url: "http://127.0.0.1/api"
                headers: {Authorization: "Bearer ${HA_TOKEN}"}
        """,
    )
    assert error.line == 8
    assert "environment variable HA_TOKEN is not set" in error.reason
    assert "export HA_TOKEN=" in error.reason


def test_missing_version(write_tools: WriteTools) -> None:
    """The version line is required."""
    error = load_error(write_tools, "tools: []\n")
    assert "add 'version: 1'" in error.reason


def test_unsupported_version(write_tools: WriteTools) -> None:
    """Only version 1 is read."""
    error = load_error(write_tools, "version: 2\ntools: []\n")
    assert error.line == 1
    assert "version: 1" in error.reason


def test_placeholder_for_undeclared_argument(write_tools: WriteTools) -> None:
    """A template may only use declared arguments."""
    error = load_error(
        write_tools,
        """
        version: 1
        mqtt: {host: 127.0.0.1}
        tools:
          - name: a
            description: b
            parameters: {type: object, properties: {room: {type: string}}}
            handler:
              mqtt: {topic: "home/{rom}/set"}
        """,
    )
    assert error.line == 8
    assert "{rom}" in error.reason and "no such argument" in error.reason


def test_argument_in_url_host_is_refused(write_tools: WriteTools) -> None:
    """Arguments may fill the path and query, never the host."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            parameters: {type: object, properties: {host: {type: string}}}
            handler:
              http: {url: "http://{host}/api"}
        """,
    )
    assert error.line == 7
    assert "only fill the path and query" in error.reason


def test_argument_in_header_is_refused(write_tools: WriteTools) -> None:
    """Headers take secrets, not arguments."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            parameters: {type: object, properties: {who: {type: string}}}
            handler:
              http:
                url: "http://127.0.0.1/api"
                headers: {X-User: "{who}"}
        """,
    )
    assert error.line == 9
    assert "not {arguments}" in error.reason


def test_mqtt_handler_without_broker(write_tools: WriteTools) -> None:
    """An mqtt tool needs the top-level broker settings."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            handler:
              mqtt: {topic: "home/x", payload: "ON"}
        """,
    )
    assert error.line == 6
    assert "top-level 'mqtt:" in error.reason


def test_handler_with_two_kinds(write_tools: WriteTools) -> None:
    """A handler is exactly one kind."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            description: b
            handler:
              python: "json:dumps"
              http: {url: "http://127.0.0.1/"}
        """,
    )
    assert error.line == 5
    assert "exactly one of python, http or mqtt (found python, http)" in error.reason


def test_tool_without_description(write_tools: WriteTools) -> None:
    """A plain function needs a description for the model."""
    error = load_error(
        write_tools,
        """
        version: 1
        tools:
          - name: a
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 3
    assert "needs a 'description'" in error.reason


def test_file_not_found(tmp_path) -> None:
    """A missing file is named."""
    with pytest.raises(ToolsFileError, match="does not exist"):
        load_tools(tmp_path / "absent.yaml")


def test_dangling_reference(write_tools: WriteTools) -> None:
    """A $ref to a definition that does not exist is named with its tool and line."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: echo
            description: Echo a thing.
            parameters:
              type: object
              properties:
                thing: {$ref: "#/$defs/missing"}
              required: [thing]
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 9
    assert error.reason == (
        "tool 'echo': $ref '#/$defs/missing' points to nothing in this schema; define it "
        "(e.g. under $defs) or fix the reference (at parameters.properties.thing.$ref)"
    )


def test_remote_reference_is_refused(write_tools: WriteTools) -> None:
    """A $ref outside the schema would be fetched over the network: it is refused."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: echo
            description: Echo a thing.
            parameters:
              type: object
              properties:
                thing:
                  type: object
                  properties:
                    inner: {$ref: "https://example.com/thing.json"}
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 12
    assert error.reason.startswith(
        "tool 'echo': $ref 'https://example.com/thing.json' refers outside this schema"
    )
    assert "nothing is fetched" in error.reason


def test_reference_to_something_not_a_schema(write_tools: WriteTools) -> None:
    """A $ref that lands on a string (here the description) is not a schema."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: echo
            description: Echo a thing.
            parameters:
              type: object
              description: the arguments
              properties:
                thing: {$ref: "#/description"}
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 10
    assert "'#/description' points to a str, not to a schema" in error.reason


async def test_local_references_load_and_check_arguments(write_tools: WriteTools) -> None:
    """$defs pointers and anchors resolve at load and validate the arguments of each call."""
    path = write_tools(
        """
        version: 1
        plugins: none
        tools:
          - name: paint
            description: Paint a room.
            parameters:
              type: object
              $defs:
                room: {type: string, enum: [hall, kitchen]}
                colour: {$anchor: colour, type: string, pattern: "^#[0-9a-f]{6}$"}
              properties:
                room: {$ref: "#/$defs/room"}
                colour: {$ref: "#colour"}
              required: [room, colour]
            handler: {python: "json:dumps"}
        """
    )
    registry = load_tools(path, environ={})
    bad = await registry.execute(ToolCall("paintcall", "paint", {"room": "attic", "colour": "red"}))
    await registry.aclose()
    problems = json.loads(bad.content)["problems"]
    assert any("'attic' is not one of" in p for p in problems)
    assert any("'red' does not match" in p for p in problems)


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ('"home/+/{room}/set"', "contains an MQTT wildcard ('+' or '#')"),
        ('"home/{room}/#"', "contains an MQTT wildcard ('+' or '#')"),
        ('"home/\\0/{room}"', "contains a NUL character"),
        ('""', "is empty"),
    ],
    ids=["plus", "hash", "nul", "empty"],
)
def test_mqtt_topic_nobody_can_publish_to(
    write_tools: WriteTools, topic: str, problem: str
) -> None:
    """Wildcards, NUL and an empty topic are refused at load, naming the tool."""
    error = load_error(
        write_tools,
        f"""
        version: 1
        plugins: none
        mqtt: {{host: 127.0.0.1}}
        tools:
          - name: set_light
            description: Switch a light.
            parameters: {{type: object, properties: {{room: {{type: string}}}}}}
            handler:
              mqtt: {{topic: {topic}, payload: "ON"}}
        """,
    )
    assert error.line == 9
    assert error.reason.startswith("tool 'set_light': the topic ")
    assert problem in error.reason


def test_mqtt_topic_variable_that_adds_a_wildcard(write_tools: WriteTools) -> None:
    """A ${VAR} in the topic is checked with its value filled in."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        mqtt: {host: 127.0.0.1}
        tools:
          - name: set_light
            description: Switch a light.
            handler:
              mqtt: {topic: "${PREFIX}/light/set", payload: "ON"}
        """,
        environ={"PREFIX": "home/#"},
    )
    assert error.line == 8
    assert error.reason.startswith(
        "tool 'set_light': the topic '${PREFIX}/light/set' once its ${variables} are filled in "
        "contains an MQTT wildcard"
    )


def test_required_names_a_property_that_does_not_exist(write_tools: WriteTools) -> None:
    """A misspelt name under required is refused at its line, naming the closest property."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: set_light
            description: Switch a light.
            parameters:
              type: object
              properties:
                room: {type: string}
                state: {type: string, enum: ["on", "off"]}
              required: [room, sate]
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 11
    assert error.reason == (
        "tool 'set_light': required lists 'sate', which is not one of its properties "
        "(room, state); declare it under properties or fix the name (did you mean 'state'?) "
        "(at parameters.required[1])"
    )


def test_required_is_checked_in_nested_objects(write_tools: WriteTools) -> None:
    """An object inside the arguments gets the same check, pointing at its own required."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: set_light
            description: Switch a light.
            parameters:
              type: object
              properties:
                light:
                  type: object
                  properties:
                    colour: {type: string}
                  required:
                    - brightness
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 14
    assert error.reason.startswith(
        "tool 'set_light': required lists 'brightness', which is not one of its properties "
        "(colour);"
    )
    assert error.reason.endswith("(at parameters.properties.light.required[0])")


def test_required_without_any_properties_is_refused(write_tools: WriteTools) -> None:
    """Arguments that require a name but declare no properties at all cannot be called."""
    error = load_error(
        write_tools,
        """
        version: 1
        plugins: none
        tools:
          - name: echo
            description: Echo a thing.
            parameters: {type: object, required: [thing]}
            handler: {python: "json:dumps"}
        """,
    )
    assert error.line == 6
    assert "required lists 'thing', which is not one of its properties (it declares none)" in (
        error.reason
    )


@pytest.mark.parametrize(
    "parameters",
    [
        "{type: object, properties: {a: {type: string}, b: {type: string}},"
        " anyOf: [{required: [a]}, {required: [b]}]}",
        "{type: object, allOf: [{properties: {a: {type: string}}}], required: [a]}",
        "{type: object, properties: {a: {}}, patternProperties: {'^x_': {}}, required: [x_1]}",
        "{type: object, properties: {a: {}}, additionalProperties: {type: string},"
        " required: [extra]}",
        "{type: object, $defs: {base: {properties: {a: {}}}}, $ref: '#/$defs/base', required: [a]}",
        "{type: object, properties: {a: {}, b: {}}, if: {properties: {a: {const: 1}}},"
        " then: {properties: {b: {minLength: 2}}, required: [a, b]}}",
        "{type: object, properties: {a: {}}, not: {properties: {a: {}}, required: [b]}}",
    ],
    ids=[
        "any-of-branches",
        "all-of",
        "pattern-properties",
        "additional-properties",
        "ref",
        "then-branch",
        "not",
    ],
)
def test_required_names_declared_elsewhere_load(write_tools: WriteTools, parameters: str) -> None:
    """Names that another keyword of the schema can supply are not taken for typos."""
    path = write_tools(
        f"""
        version: 1
        plugins: none
        tools:
          - name: echo
            description: Echo a thing.
            parameters: {parameters}
            handler: {{python: "json:dumps"}}
        """
    )
    assert "echo" in load_tools(path, environ={})
