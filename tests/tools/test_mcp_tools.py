"""MCP servers in tools.yaml: real servers written with the official SDK, over stdio and HTTP."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant.cli import main
from assistant.events import ToolCall
from assistant.tools import ToolRegistry, ToolsFileError, load_tools
from tests.support.mcp import McpHttpServer, stdio_entry

TOKEN = "ha-long-lived-token-0123456789"


def write_file(folder: Path, *servers: dict[str, Any]) -> Path:
    """A tools.yaml with only the given ``mcp_servers`` entries (no plugins)."""
    path = folder / "tools.yaml"
    document = {"version": 1, "plugins": "none", "mcp_servers": list(servers)}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="abcDEF123", name=name, arguments=arguments)


@pytest.fixture
def http_server() -> Iterator[McpHttpServer]:
    """The test MCP server over streamable HTTP, requiring the bearer token TOKEN."""
    with McpHttpServer(TOKEN) as server:
        yield server


@pytest.fixture
async def stdio_registry(tmp_path: Path) -> Any:
    """The test server's tools over stdio, calls logged to tmp_path/calls.jsonl."""
    registry = load_tools(write_file(tmp_path, stdio_entry(tmp_path / "calls.jsonl")))
    yield registry
    await registry.aclose()


async def test_stdio_tools_join_the_registry_with_their_schemas(stdio_registry) -> None:
    """Every tool the server lists is registered, kind mcp, with its description and schema."""
    spec = stdio_registry.get("set_light")
    assert spec is not None and spec.kind == "mcp"
    assert spec.description == "Switch the light of a room on or off."
    assert spec.parameters["properties"]["state"]["enum"] == ["on", "off"]
    assert set(spec.parameters["required"]) == {"room", "state"}
    assert {"add", "house_report", "jammed", "slow", "process_id"} <= {
        s.name for s in stdio_registry.specs
    }


async def test_a_stdio_call_reaches_the_server_and_returns_its_result(
    stdio_registry, tmp_path: Path
) -> None:
    """The call runs in the server process; its structured result is what the model reads."""
    result = await stdio_registry.execute(call("set_light", room="kitchen", state="on"))
    assert result.ok, result.error
    assert json.loads(result.content) == {"room": "kitchen", "state": "on", "done": True}
    (logged,) = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert logged["room"] == "kitchen" and logged["pid"] != os.getpid()


async def test_json_text_results_are_parsed(stdio_registry) -> None:
    """A tool that answers JSON text (as Home Assistant's server does) gives the model JSON."""
    result = await stdio_registry.execute(call("house_report"))
    assert json.loads(result.content) == {"lights_on": ["kitchen"], "temperature_c": 21.5}


async def test_a_tool_error_returns_to_the_model(stdio_registry) -> None:
    """A failure the server reports is a failed result with its reason; the server goes on."""
    failed = await stdio_registry.execute(call("jammed"))
    assert not failed.ok
    assert "the garage door is jammed" in json.loads(failed.content)["error"]
    assert (await stdio_registry.execute(call("add", a=2, b=3))).ok


async def test_bad_arguments_never_reach_the_server(stdio_registry, tmp_path: Path) -> None:
    """Arguments are checked against the server's schema first; the model reads the problems."""
    result = await stdio_registry.execute(call("set_light", room="kitchen", state="dim"))
    assert not result.ok and "invalid arguments" in result.content
    assert not (tmp_path / "calls.jsonl").exists()


async def test_the_per_tool_timeout_stops_a_call(tmp_path: Path) -> None:
    """A call over timeout_s fails as a timeout; the next call on the connection works."""
    registry = load_tools(write_file(tmp_path, stdio_entry(timeout_s=0.5)))
    try:
        slow = await registry.execute(call("slow", seconds=30))
        assert not slow.ok and "0.5 s" in (slow.error or "")
        assert json.loads((await registry.execute(call("add", a=1, b=1))).content) == {"result": 2}
    finally:
        await registry.aclose()


async def test_a_lost_stdio_server_is_reconnected(stdio_registry) -> None:
    """After the program dies, the call that finds out fails readably; the next one works."""
    first = json.loads((await stdio_registry.execute(call("process_id"))).content)["result"]
    os.kill(first, signal.SIGKILL)
    lost = await stdio_registry.execute(call("add", a=1, b=2))
    assert not lost.ok and "lost" in (lost.error or "")
    again = await stdio_registry.execute(call("process_id"))
    assert again.ok, again.error
    assert json.loads(again.content)["result"] != first


async def test_prefix_and_allow_list(tmp_path: Path) -> None:
    """Only allow-listed tools join, under the prefix; calls still reach the server's name."""
    entry = stdio_entry(prefix="home_", tools=["add", "set_light"], confirm=["set_light"])
    registry = load_tools(write_file(tmp_path, entry))
    try:
        assert sorted(s.name for s in registry.specs) == ["home_add", "home_set_light"]
        assert registry.get("home_set_light").confirm  # type: ignore[union-attr]
        result = await registry.execute(call("home_add", a=20, b=22))
        assert json.loads(result.content) == {"result": 42}
    finally:
        await registry.aclose()


def test_an_allow_listed_tool_the_server_lacks_is_refused(tmp_path: Path) -> None:
    """A name in 'tools' the server does not offer stops the load, listing what it offers."""
    path = write_file(tmp_path, stdio_entry(tools=["add", "open_gate"]))
    with pytest.raises(ToolsFileError) as caught:
        load_tools(path)
    message = str(caught.value)
    assert "tools.yaml:" in message and "'open_gate'" in message and "set_light" in message


def test_a_server_that_cannot_start_is_refused_at_load(tmp_path: Path) -> None:
    """A command that is no MCP server stops the load with the entry's line and the reason."""
    path = write_file(tmp_path, {"name": "broken", "command": "false", "connect_timeout_s": 5})
    with pytest.raises(ToolsFileError, match=r"tools\.yaml:\d+: mcp_servers\[0\] \('broken'\)"):
        load_tools(path)


def test_an_entry_with_both_transports_is_refused(tmp_path: Path) -> None:
    """'command' and 'url' together are refused with the fix, before anything is started."""
    path = write_file(tmp_path, {"name": "x", "command": "a", "url": "http://127.0.0.1:1/mcp"})
    with pytest.raises(ToolsFileError, match="exactly one of 'command'"):
        load_tools(path)


async def test_http_server_with_a_token_from_the_environment(
    http_server: McpHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bearer token comes from the variable token_env names; calls go over HTTP."""
    monkeypatch.setenv("TEST_MCP_TOKEN", TOKEN)
    entry = {"name": "ha", "url": http_server.url, "token_env": "TEST_MCP_TOKEN"}
    registry = load_tools(write_file(tmp_path, entry))
    try:
        result = await registry.execute(call("add", a=5, b=6))
        assert json.loads(result.content) == {"result": 11}
    finally:
        await registry.aclose()


def test_a_wrong_token_is_refused_at_load(
    http_server: McpHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token the server refuses stops the load; the message never shows the token."""
    monkeypatch.setenv("TEST_MCP_TOKEN", "wrong-token-value-42")
    entry = {"name": "ha", "url": http_server.url, "token_env": "TEST_MCP_TOKEN"}
    with pytest.raises(ToolsFileError) as caught:
        load_tools(write_file(tmp_path, entry))
    assert "mcp_servers[0] ('ha')" in str(caught.value)
    assert "HTTP 401" in str(caught.value) and "TEST_MCP_TOKEN" in str(caught.value)
    assert "wrong-token-value-42" not in str(caught.value)


async def test_secrets_are_masked_in_results_and_never_logged(
    http_server: McpHttpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server echoing its bearer token gives the model ***; no log line holds the token."""
    monkeypatch.setenv("TEST_MCP_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    entry = {"name": "ha", "url": http_server.url, "token_env": "TEST_MCP_TOKEN"}
    registry = load_tools(write_file(tmp_path, entry))
    try:
        result = await registry.execute(call("secret_echo"))
    finally:
        await registry.aclose()
    assert json.loads(result.content)["authorization"] == "Bearer ***"
    assert TOKEN not in caplog.text


async def test_a_restarted_http_server_is_reconnected(
    http_server: McpHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP server going away fails a call readably; once it is back, calls work again."""
    monkeypatch.setenv("TEST_MCP_TOKEN", TOKEN)
    entry = {"name": "ha", "url": http_server.url, "token_env": "TEST_MCP_TOKEN"}
    registry: ToolRegistry = load_tools(write_file(tmp_path, entry))
    try:
        assert (await registry.execute(call("add", a=1, b=1))).ok
        http_server.stop()
        down = await registry.execute(call("add", a=1, b=1))
        assert not down.ok
        http_server.start()
        back = await registry.execute(call("add", a=2, b=2))
        assert back.ok, back.error
        assert json.loads(back.content) == {"result": 4}
    finally:
        await registry.aclose()


def test_tools_check_lists_mcp_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tools check` connects, lists each MCP tool as kind mcp with its server, and exits 0."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("assistant").level)
    try:
        assert main(["tools", "check", str(write_file(tmp_path, stdio_entry(prefix="h_")))]) == 0
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("assistant").setLevel(saved[2])
    out = capsys.readouterr().out
    assert "all valid" in out
    (line,) = [line for line in out.splitlines() if line.split()[:1] == ["h_set_light"]]
    assert line.split()[1] == "mcp"
    assert "(MCP server 'house')" in out
