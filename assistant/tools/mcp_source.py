"""One MCP server as a source of tools: its connection, its tool list, and calls to its tools.

``McpSource`` talks to the server through the official ``mcp`` SDK's ``Client`` (a program over
its stdin/stdout, or a streamable HTTP endpoint). The connection lives on a private thread with
its own event loop, so that ``load_tools`` (synchronous) can list the tools at start, and any
event loop (a server's, a ``tools call`` command's, a test's) can call them later; the SDK's
anyio task groups stay inside the one loop that opened them.

A lost connection (the program died, the HTTP server went away) fails the call that found it —
the request may or may not have reached the tool, so it is never sent twice — and the source
reconnects at once in the background; the next call uses the new connection (or waits for it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from assistant.tools.results import describe_exception

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult, Tool

log = logging.getLogger("assistant.tools")

T = TypeVar("T")

CLOSE_TIMEOUT_S = 10.0
"""Closing waits this long for the server to stop (the SDK kills a stdio program after 2 s)."""

MAX_LIST_PAGES = 100
"""A server whose tool list goes on past this many pages is not listed further."""


class McpError(Exception):
    """A call to an MCP server failed; the message names the server and says why."""


class McpUnavailableError(McpError):
    """The server cannot be reached (not started, refused, wrong token, timed out)."""


@dataclass(frozen=True)
class StdioTarget:
    """An MCP server program, spoken to over its stdin and stdout."""

    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    """Added to the SDK's minimal default environment (not the assistant's whole one)."""
    cwd: str | None = None

    def describe(self) -> str:
        """How the server is started, for messages (arguments left out: they may hold secrets)."""
        return f"the program {self.command!r}"


@dataclass(frozen=True)
class HttpTarget:
    """An MCP server at a streamable HTTP endpoint."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (the bearer token goes here); never logged."""

    def describe(self) -> str:
        """Where the server is, for messages."""
        return f"the endpoint {self.url}"


class McpSource:
    """One MCP server: connect and list its tools once, then call them from any event loop."""

    def __init__(
        self,
        name: str,
        target: StdioTarget | HttpTarget,
        *,
        connect_timeout_s: float = 15.0,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.name = name
        self.target = target
        self.connect_timeout_s = connect_timeout_s
        self._redact = redact
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"mcp-{name}", daemon=True
        )
        self._started = False
        self._closed = False
        # Touched only on the source's own loop:
        self._client: Client | None = None
        self._lost: asyncio.Event | None = None
        self._connecting: asyncio.Task[Client] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._http_refusal: str | None = None
        """The last HTTP error status the server answered (the SDK's errors do not say it)."""
        self.connections = 0
        """Connections opened so far (the first one included)."""

    # --- from the outside ------------------------------------------------------------------

    def start(self) -> list[Tool]:
        """Connect and list the server's tools (blocking); ``McpUnavailableError`` on failure.

        On failure the source is already closed.
        """
        self._thread.start()
        self._started = True
        try:
            return self._run_blocking(self._list_tools(), self.connect_timeout_s + CLOSE_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout_s: float
    ) -> CallToolResult:
        """Call ``name`` on the server from any event loop; ``McpError`` when it cannot answer.

        Cancelling the awaiting task cancels the request on the server's connection too.
        """
        if self._closed:
            raise McpError(f"the MCP server {self.name!r} is closed")
        call = self._call(name, arguments, timeout_s)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self._loop))

    async def aclose(self) -> None:
        """Close the connection (a stdio program is stopped) and the source's thread."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """``aclose`` for synchronous callers; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self._loop.close()
            return
        with contextlib.suppress(Exception):
            self._run_blocking(self._shutdown(), CLOSE_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    def _run_blocking(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise McpUnavailableError(
                f"the MCP server {self.name!r} ({self.target.describe()}) did not answer "
                f"within {timeout_s:g} s"
            ) from None

    # --- on the source's loop --------------------------------------------------------------

    async def _list_tools(self) -> list[Tool]:
        client = await self._ensure_client()
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            try:
                page = await client.list_tools(cursor=cursor)
            except Exception as exc:
                raise McpUnavailableError(self._reason("listing its tools failed", exc)) from None
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def _call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> CallToolResult:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = await self._ensure_client()
        try:
            return await client.call_tool(name, arguments, read_timeout_seconds=timeout_s)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise McpError(
                    f"the MCP server {self.name!r} did not answer within {timeout_s:g} s"
                ) from None
            if exc.code != CONNECTION_CLOSED:
                raise McpError(
                    self._redact(f"the MCP server {self.name!r} refused the call: {exc.message}")
                ) from None
            reason: BaseException = exc
        except Exception as exc:  # the transport failed under the call (HTTP, pipes)
            reason = exc
        self._connection_lost(client, reason)
        raise McpError(
            f"the connection to the MCP server {self.name!r} was lost during the call (it may "
            "or may not have run); it is being reconnected, so a new call can be made"
        )

    async def _ensure_client(self) -> Client:
        if self._client is not None:
            return self._client
        if self._closed:
            raise McpError(f"the MCP server {self.name!r} is closed")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect(), name=f"mcp-{self.name}-connect")
        # Shielded: one caller giving up (its timeout) must not cancel the connection for all.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Client:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._lost = asyncio.Event()
        self._supervisor = asyncio.create_task(
            self._hold_connection(ready, self._lost), name=f"mcp-{self.name}-connection"
        )
        try:
            client = await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout_s)
        except TimeoutError:
            self._supervisor.cancel()
            raise McpUnavailableError(
                f"the MCP server {self.name!r} ({self.target.describe()}) did not connect within "
                f"{self.connect_timeout_s:g} s"
            ) from None
        self._http_refusal = None
        self.connections += 1
        if self.connections > 1:
            log.info("MCP server %s: reconnected", self.name)
        return client

    async def _hold_connection(self, ready: asyncio.Future[Client], lost: asyncio.Event) -> None:
        """Open the client, keep it open until it is lost or closed, then close it.

        The SDK's context must be entered and left by one task: this one.
        """
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(self._open(stack))
                self._client = client
                ready.set_result(client)
                await lost.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(McpUnavailableError(f"connecting to {self.name!r} stopped"))
            raise
        except BaseException as exc:  # an ExceptionGroup from the SDK's task groups, too
            if not ready.done():
                ready.set_exception(McpUnavailableError(self._reason("cannot connect", exc)))
            elif lost.is_set() or self._closed:
                log.debug("MCP server %s: %s", self.name, self._reason("connection closed", exc))
            else:
                log.warning("MCP server %s: %s", self.name, self._reason("connection ended", exc))
        finally:
            if self._lost is lost:
                self._client = None

    def _open(self, stack: contextlib.AsyncExitStack) -> Client:
        from mcp import Client, StdioServerParameters
        from mcp.types import Implementation

        from assistant import __version__

        info = Implementation(name="voxtral-assistant", version=__version__)
        target = self.target
        if isinstance(target, StdioTarget):
            params = StdioServerParameters(
                command=target.command, args=list(target.args), env=target.env, cwd=target.cwd
            )
            return Client(params, client_info=info)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        # Proxy variables are ignored, as for the http tools: a tool talks to the address it
        # declares. The SDK's own redirect rule (same origin only) applies.
        async def remember_refusal(response: httpx2.Response) -> None:
            if response.status_code >= 400:
                self._http_refusal = f"HTTP {response.status_code} {response.reason_phrase}"

        http = httpx2.AsyncClient(
            headers=target.headers,
            timeout=httpx2.Timeout(self.connect_timeout_s, read=300.0),
            trust_env=False,
            event_hooks={"response": [remember_refusal]},
        )
        stack.push_async_callback(http.aclose)
        return Client(streamable_http_client(target.url, http_client=http), client_info=info)

    def _connection_lost(self, client: Client, reason: BaseException) -> None:
        if self._client is not client or self._lost is None:
            return  # already noticed by another call
        log.warning(
            "MCP server %s: %s; reconnecting",
            self.name,
            self._reason("lost the connection", reason),
        )
        self._client = None
        self._lost.set()
        if not self._closed:
            # Reconnect now, not at the next call: the next call then finds it ready.
            self._connecting = asyncio.create_task(self._connect(), name=f"mcp-{self.name}-connect")
            self._connecting.add_done_callback(self._log_failed_reconnect)

    def _log_failed_reconnect(self, task: asyncio.Task[Client]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("MCP server %s: reconnecting failed: %s", self.name, task.exception())

    async def _shutdown(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._lost is not None:
            self._lost.set()
        if self._supervisor is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._supervisor, CLOSE_TIMEOUT_S)

    def _reason(self, what: str, exc: BaseException) -> str:
        refusal, self._http_refusal = self._http_refusal, None
        leaf = _leaf_error(exc)
        return self._redact(f"{what}: {refusal} ({leaf})" if refusal else f"{what}: {leaf}")


def _leaf_error(exc: BaseException) -> str:
    """The innermost failure of an exception group (the SDK nests task-group errors)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpError):
        return str(exc)
    return describe_exception(exc)
