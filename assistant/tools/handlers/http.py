"""``http:`` — one HTTP request per call; the (size-capped) response body is the result.

Arguments fill the URL's path and query (each value percent-encoded into one component) and
the JSON body (as data); headers take only ``${VAR}`` secrets, never arguments.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from assistant.tools.context import ToolContext
from assistant.tools.schema import HttpHandlerConfig
from assistant.tools.source import Environment, Location, SourceMap
from assistant.tools.templating import (
    Placeholder,
    Template,
    escape_url_component,
    parse_structure,
    render_structure,
    structure_placeholders,
)

ERROR_BODY_CHARS = 300
"""How much of an unexpected response's body the model sees."""


class HttpStatusError(Exception):
    """The server answered with a status the tool does not expect."""


class ResponseTooLargeError(Exception):
    """The response body is over ``max_response_bytes``."""


class HttpHandler:
    """Sends the configured request with the call's arguments filled in."""

    def __init__(
        self,
        method: str,
        url: Template,
        headers: dict[str, str],
        body: Any,
        expect_status: frozenset[int] | None,
        max_response_bytes: int,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.expect_status = expect_status
        self.max_response_bytes = max_response_bytes
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(
        cls, config: HttpHandlerConfig, env: Environment, source: SourceMap, loc: Location
    ) -> HttpHandler:
        """Parse the templates; ``ToolsFileError`` for arguments where they cannot go."""
        url = Template.parse(config.url, env, source, (*loc, "url"))
        _check_url_shape(url, source, (*loc, "url"))
        headers = {}
        for key, value in config.headers.items():
            template = Template.parse(value, env, source, (*loc, "headers", key))
            if template.placeholders:
                raise source.error(
                    (*loc, "headers", key),
                    "headers may use ${VAR} secrets but not {arguments}; "
                    "move the argument into the URL or the json body",
                )
            headers[key] = template.render({})
        body = None
        if config.json_body is not None:
            body = parse_structure(config.json_body, env, source, (*loc, "json"))
        expect = config.expect_status
        expected = frozenset([expect] if isinstance(expect, int) else expect) if expect else None
        return cls(config.method, url, headers, body, expected, config.max_response_bytes)

    def placeholders(self) -> list[tuple[Placeholder, Location]]:
        """Every argument the templates use, with where it sits (for load-time checks)."""
        found: list[tuple[Placeholder, Location]] = [(p, ("url",)) for p in self.url.placeholders]
        found += [(p, ("json",)) for p in structure_placeholders(self.body)]
        return found

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Send the request; raise on an unexpected status or an oversize body."""
        url = self.url.render(arguments, escape_url_component)
        headers = dict(self.headers)
        content = None
        if self.body is not None:
            body = render_structure(self.body, arguments)
            content = json.dumps(body, ensure_ascii=False).encode("utf-8")
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/json"
        client = self._get_client()
        async with client.stream(
            self.method,
            url,
            headers=headers,
            content=content,
            # No timeout of its own: the registry's per-tool timeout cancels the whole call.
            timeout=None,
        ) as response:
            data = await self._read_capped(response)
            if not self._status_ok(response.status_code):
                snippet = data[:ERROR_BODY_CHARS].decode("utf-8", errors="replace")
                raise HttpStatusError(
                    f"{self.method} answered HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                    + (f": {snippet}" if snippet.strip() else "")
                )
            return _decode_body(data, response.headers.get("content-type", ""))

    def _status_ok(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        return status in self.expect_status

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_response_bytes:
            raise ResponseTooLargeError(
                f"the response ({declared} bytes) is larger than the {self.max_response_bytes} "
                "bytes allowed"
            )
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > self.max_response_bytes:
                raise ResponseTooLargeError(
                    f"the response is larger than the {self.max_response_bytes} bytes allowed"
                )
        return bytes(data)

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Redirects are not followed: a tool talks to the endpoint it declares, nowhere else.
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _decode_body(data: bytes, content_type: str) -> Any:
    if not data:
        return None
    text = data.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _check_url_shape(url: Template, source: SourceMap, loc: Location) -> None:
    """Arguments may fill the path and query only: never the scheme, host or port."""
    prefix = ""
    for part in url.parts:
        if isinstance(part, Placeholder):
            _, sep, rest = prefix.partition("://")
            if not sep or "/" not in rest:
                raise source.error(
                    loc,
                    "the URL must start with a fixed scheme and host (http://host/...) before "
                    "any {argument}; arguments may only fill the path and query",
                )
            return
        prefix += part
    if "://" not in prefix:
        raise source.error(
            loc, "the URL needs a scheme and host, e.g. http://127.0.0.1:8123/api/..."
        )
