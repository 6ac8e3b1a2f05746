"""The http handler against a real HTTP server on loopback."""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from assistant.events import ToolCall
from assistant.tools import ToolRegistry, load_tools

from .conftest import RecordingServer, WriteTools

TOKEN = "ha-long-lived-token-123"
ROOM = {"type": "object", "properties": {"room": {"type": "string"}}}

MakeRegistry = Callable[..., ToolRegistry]


@pytest.fixture
async def make_registry(
    write_tools: WriteTools, http_server: RecordingServer
) -> AsyncIterator[MakeRegistry]:
    """Build a one-tool registry whose http handler is given as YAML lines."""
    made: list[ToolRegistry] = []

    def make(handler: str, parameters: dict | None = None, extra: str = "") -> ToolRegistry:
        text = f"""
        version: 1
        plugins: none
        tools:
          - name: web
            description: Call the test server.
            parameters: {json.dumps(parameters or ROOM)}
            {extra}
            handler:
              http:
        """
        lines = textwrap.dedent(handler).strip().splitlines()
        body = "\n".join(" " * 16 + line for line in lines)
        path = write_tools(text.rstrip() + "\n" + body.replace("SERVER", http_server.url) + "\n")
        registry = load_tools(path, environ={"HA_TOKEN": TOKEN})
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.aclose()


def web(**arguments: object) -> ToolCall:
    return ToolCall(id="callhttp1", name="web", arguments=arguments)


async def test_request_method_url_headers_and_body(
    make_registry: MakeRegistry, http_server: RecordingServer
) -> None:
    """The declared method, URL, headers and JSON body (typed values) reach the server."""
    registry = make_registry(
        """
        method: post
        url: "SERVER/api/services/light/turn_on?source=voice"
        headers: {Authorization: "Bearer ${HA_TOKEN}", X-Client: voxtral}
        json: {entity_id: "light.{room}", brightness: "{level}", transition: 2}
        """,
        parameters={
            "type": "object",
            "properties": {"room": {"type": "string"}, "level": {"type": "integer"}},
        },
    )
    result = await registry.execute(web(room="kitchen", level=128))
    assert result.ok, result.content
    seen = http_server.requests[0]
    assert seen.method == "POST"
    assert seen.path == "/api/services/light/turn_on?source=voice"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["X-Client"] == "voxtral"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {
        "entity_id": "light.kitchen",
        "brightness": 128,
        "transition": 2,
    }


async def test_json_response_is_the_result(make_registry: MakeRegistry) -> None:
    """A JSON body comes back parsed (here the server's echo of the request)."""
    registry = make_registry('url: "SERVER/echo/{room}"')
    result = await registry.execute(web(room="hall"))
    assert json.loads(result.content)["path"] == "/echo/hall"


async def test_text_response_is_the_result(make_registry: MakeRegistry) -> None:
    """A text body comes back as a JSON string."""
    registry = make_registry('url: "SERVER/text"')
    result = await registry.execute(web())
    assert (result.ok, result.content) == (True, '"plain words"')


async def test_empty_response_reads_as_ok(make_registry: MakeRegistry) -> None:
    """204 No Content is a success without a body."""
    registry = make_registry('url: "SERVER/empty"')
    result = await registry.execute(web())
    assert (result.ok, result.content) == (True, '{"ok": true}')


async def test_error_status_is_reported(make_registry: MakeRegistry) -> None:
    """A non-2xx status is an error with the status and the start of the body."""
    registry = make_registry('url: "SERVER/status/503"')
    result = await registry.execute(web())
    assert not result.ok
    assert "GET answered HTTP 503 Service Unavailable: nope from the server" in result.content


async def test_expected_status_is_configurable(make_registry: MakeRegistry) -> None:
    """expect_status lists the statuses that count as success."""
    registry = make_registry('url: "SERVER/status/404"\nexpect_status: [200, 404]')
    result = await registry.execute(web())
    assert (result.ok, result.content) == (True, '"nope from the server"')


async def test_unexpected_success_status_is_an_error(make_registry: MakeRegistry) -> None:
    """With expect_status 201, a 200 is not accepted."""
    registry = make_registry('url: "SERVER/echo"\nexpect_status: 201')
    result = await registry.execute(web())
    assert not result.ok
    assert "HTTP 200" in result.content


async def test_slow_server_times_out(make_registry: MakeRegistry) -> None:
    """A server slower than timeout_s cancels the request and tells the model."""
    registry = make_registry('url: "SERVER/slow?s=2"', extra="timeout_s: 0.3")
    result = await registry.execute(web())
    assert not result.ok
    assert "did not finish within 0.3 s" in result.content


async def test_oversize_response_is_refused(make_registry: MakeRegistry) -> None:
    """A body over max_response_bytes (declared by Content-Length) is an error."""
    registry = make_registry('url: "SERVER/big?bytes=200000"\nmax_response_bytes: 1000')
    result = await registry.execute(web())
    assert not result.ok
    assert "larger than the 1000 bytes allowed" in result.content


async def test_oversize_chunked_response_is_refused(make_registry: MakeRegistry) -> None:
    """Without Content-Length the cap is enforced while reading."""
    registry = make_registry('url: "SERVER/big?bytes=10485760&chunked=1"\nmax_response_bytes: 4096')
    result = await registry.execute(web())
    assert not result.ok
    assert "larger than the 4096 bytes allowed" in result.content


async def test_path_injection_stays_in_its_segment(
    make_registry: MakeRegistry, http_server: RecordingServer
) -> None:
    """room="kitchen/../../admin?x=1" is one encoded path segment, not a new path or query."""
    registry = make_registry('url: "SERVER/api/rooms/{room}/lights"')
    await registry.execute(web(room="kitchen/../../admin?x=1"))
    assert http_server.requests[0].path == "/api/rooms/kitchen%2F..%2F..%2Fadmin%3Fx%3D1/lights"


async def test_query_injection_stays_in_its_value(
    make_registry: MakeRegistry, http_server: RecordingServer
) -> None:
    """'&' and '=' in a query value cannot add parameters."""
    registry = make_registry('url: "SERVER/search?q={room}&limit=1"')
    await registry.execute(web(room="x&limit=1000&admin=1"))
    assert http_server.requests[0].path == "/search?q=x%26limit%3D1000%26admin%3D1&limit=1"


async def test_secret_is_masked_in_results_and_logs(
    make_registry: MakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the bearer token cannot leak it to the model or the log."""
    registry = make_registry('url: "SERVER/echo"\nheaders: {Authorization: "Bearer ${HA_TOKEN}"}')
    with caplog.at_level(logging.DEBUG):
        result = await registry.execute(web())
    assert result.ok
    assert json.loads(result.content)["headers"]["authorization"] == "Bearer ***"
    assert TOKEN not in result.content
    assert TOKEN not in caplog.text


async def test_unreachable_server_is_a_readable_error(write_tools: WriteTools) -> None:
    """A refused connection becomes an error result naming the failure."""
    registry = load_tools(
        write_tools(
            """
            version: 1
            plugins: none
            tools:
              - name: web
                description: Nothing listens there.
                handler: {http: {url: "http://127.0.0.1:9/x"}}
            """
        )
    )
    result = await registry.execute(web())
    await registry.aclose()
    assert not result.ok
    assert result.error is not None and result.error.startswith("ConnectError")


async def test_shipped_home_assistant_example_calls_the_rest_api(
    write_tools: WriteTools, http_server: RecordingServer
) -> None:
    """The commented http example in tools.yaml, uncommented, POSTs a HA service with the token."""
    shipped = (Path(__file__).parents[2] / "tools.yaml").read_text(encoding="utf-8")
    commented = shipped[shipped.index("  # - name: run_scene") :].splitlines()
    example = "\n".join("  " + line.strip().removeprefix("# ") for line in commented)
    path = write_tools("version: 1\nplugins: none\ntools:\n" + example + "\n")
    registry = load_tools(path, environ={"HA_URL": http_server.url, "HA_TOKEN": TOKEN})
    result = await registry.execute(ToolCall("scenecall", "run_scene", {"scene": "movie_night"}))
    await registry.aclose()
    assert result.ok, result.content
    [seen] = http_server.requests
    assert (seen.method, seen.path) == ("POST", "/api/services/scene/turn_on")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen.body) == {"entity_id": "scene.movie_night"}
