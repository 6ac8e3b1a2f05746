"""A spoken turn calls a tool served by a real MCP server (official SDK; stdio and HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant.conversation.dialogue import Dialogue
from assistant.events import ToolResult
from assistant.tools import load_tools
from tests.dialogue.house import turn
from tests.support import mcp_server
from tests.support.mcp import McpHttpServer, stdio_entry

TOKEN = "ha-long-lived-token-for-the-dialogue"


@pytest.fixture
def http_server() -> Iterator[McpHttpServer]:
    with McpHttpServer(TOKEN) as server:
        yield server


def tools_file(folder: Path, entry: dict[str, Any]) -> Path:
    path = folder / "tools.yaml"
    document = {"version": 1, "plugins": "none", "mcp_servers": [entry]}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


async def spoken_light_turn(scripted: Any, speech: Any, path: Path) -> tuple[list[Any], Any]:
    """Speech in, a forced set_light call, the result back to the model, its answer out."""
    worker, script = scripted
    tools = load_tools(path)
    script.say(None, [{"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}}])
    script.say("The kitchen light is on.")
    try:
        dialogue = Dialogue(worker, tools)
        dialogue.add_user_turn(audio=speech("turn on the kitchen light"))
        events = await turn(dialogue)
    finally:
        await tools.aclose()
    return events, script


async def test_spoken_turn_calls_a_stdio_mcp_tool(scripted, speech, tmp_path: Path) -> None:
    """The call runs in the MCP server program; its result is in the model's next prompt."""
    log = tmp_path / "calls.jsonl"
    events, script = await spoken_light_turn(
        scripted, speech, tools_file(tmp_path, stdio_entry(log))
    )
    (logged,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (logged["room"], logged["state"]) == ("kitchen", "on")
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.ok, result.error
    second_prompt = script.prompts[1]
    assert f"[TOOL_RESULTS]{result.call_id}[TOOL_CONTENT]" in second_prompt
    assert '"done": true' in second_prompt
    assert events[-1].text == "The kitchen light is on."


async def test_spoken_turn_calls_an_http_mcp_tool(
    scripted, speech, tmp_path: Path, http_server: McpHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over streamable HTTP with a bearer token: the server saw the call and the token."""
    monkeypatch.setenv("TEST_HA_TOKEN", TOKEN)
    mcp_server.LAST_AUTHORIZATION.clear()
    entry = {"name": "ha", "url": http_server.url, "token_env": "TEST_HA_TOKEN"}
    events, script = await spoken_light_turn(scripted, speech, tools_file(tmp_path, entry))
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.ok, result.error
    assert json.loads(result.content) == {"room": "kitchen", "state": "on", "done": True}
    assert set(mcp_server.LAST_AUTHORIZATION) == {f"Bearer {TOKEN}"}
    assert f"[TOOL_RESULTS]{result.call_id}[TOOL_CONTENT]" in script.prompts[1]
    assert events[-1].text == "The kitchen light is on."
