"""A real MCP server for the tests, written with the official ``mcp`` SDK.

Run it over stdio with ``python -m tests.support.mcp_server`` (from the repository root), or
over streamable HTTP with ``tests.support.mcp.McpHttpServer``. Every call of ``set_light`` is
appended to the JSON-lines file named by ``MCP_TEST_LOG`` (when set), so a test can see that the
call reached this process.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

LAST_AUTHORIZATION: list[str] = []
"""The ``Authorization`` headers the HTTP wrapper saw, newest last (HTTP only)."""


def build_server() -> MCPServer:
    """The test server with its tools."""
    server = MCPServer("house-test", version="1.0")

    @server.tool()
    def set_light(room: str, state: Literal["on", "off"]) -> dict[str, Any]:
        """Switch the light of a room on or off."""
        call = {"tool": "set_light", "room": room, "state": state, "pid": os.getpid()}
        log_path = os.environ.get("MCP_TEST_LOG")
        if log_path:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(call) + "\n")
        return {"room": room, "state": state, "done": True}

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        return a + b

    @server.tool(structured_output=False)
    def house_report() -> str:
        """A report as JSON text (as Home Assistant's MCP server answers)."""
        return json.dumps({"lights_on": ["kitchen"], "temperature_c": 21.5})

    @server.tool()
    def jammed() -> str:
        """Open the garage (always fails)."""
        raise ToolError("the garage door is jammed")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Wait, then answer."""
        await anyio.sleep(seconds)
        return "finally"

    @server.tool()
    def process_id() -> int:
        """The server process's id."""
        return os.getpid()

    @server.tool()
    def secret_echo() -> dict[str, Any]:
        """What the server knows of its credentials (to check that results are masked)."""
        return {
            "api_key": os.environ.get("MCP_TEST_API_KEY"),
            "authorization": LAST_AUTHORIZATION[-1] if LAST_AUTHORIZATION else None,
        }

    return server


if __name__ == "__main__":
    build_server().run("stdio")
