"""POST bodies: checked before they are read, bounded while they are held."""

from __future__ import annotations

import asyncio
import json

import pytest

from assistant.config import ServerSettings
from assistant.server.http_edge import BodyBudget
from tests.server.wire import http

pytestmark = pytest.mark.timeout(60)

MAX_BODY_BYTES_IN_FLIGHT = ServerSettings().max_body_bytes_in_flight


async def _post_head(
    port: int, size_bytes: int, *, token: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection and send only the head of a JSON POST /v1/respond (100-continue)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"POST /v1/respond HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nExpect: 100-continue\r\n"
        f"Content-Length: {size_bytes}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, object]]:
    """The status line and the JSON body of a final (non-100) response."""
    status = await reader.readline()
    assert status, "the server closed the connection without an answer"
    headers = {}
    while (line := await reader.readline()).strip():
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, json.loads(body)


async def test_a_post_without_the_token_is_refused_before_its_body(start_server) -> None:
    """A token-less POST announcing 24 MiB gets 401 at once, with no 100 Continue, body unsent."""
    async with start_server(token="s3cret") as server:
        reader, writer = await _post_head(server.port, 24 * 2**20)
        try:
            async with asyncio.timeout(1.0):
                status, error = await _answer(reader)
        finally:
            writer.close()
    assert status.startswith(b"HTTP/1.1 401")
    assert "token" in str(error["error"])


async def test_a_wrong_path_is_refused_before_the_body(server) -> None:
    """A POST to a path that takes none gets its 405 without the announced body being sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n")
    try:
        async with asyncio.timeout(1.0):
            status, _ = await _answer(reader)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 405")


async def test_uploads_beyond_the_bytes_in_flight_get_503(start_server, script) -> None:
    """While two half-limit uploads are held, a third gets 503 at once; once they end, it passes."""
    script.say("Done.")
    budget = 2 * 2**20  # server.max_body_bytes_in_flight, passed through to the HTTP API
    limits = {
        "max_body_bytes_in_flight": budget,
        "max_request_body_bytes": budget // 2,
        "request_timeout_s": 1.0,
    }
    async with start_server(limits=limits) as server:
        url = f"http://127.0.0.1:{server.port}/v1/respond"
        held = [await _post_head(server.port, budget // 2) for _ in range(2)]
        try:
            async with asyncio.timeout(1.0):
                for reader, _ in held:  # 100 Continue: the upload was admitted
                    assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
                    assert await reader.readline() == b"\r\n"
            refused = await http("POST", url, json_body={"text": "hi"})
            async with asyncio.timeout(5.0):
                timed_out = [await _answer(reader) for reader, _ in held]
        finally:
            for _, writer in held:
                writer.close()
        accepted = await http("POST", url, json_body={"text": "hi"})
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "try again later" in refused.json()["error"]["message"]
    assert [status[:12] for status, _ in timed_out] == [b"HTTP/1.1 408"] * 2
    assert accepted.status_code == 200
    assert accepted.json()["text"] == "Done."


async def test_a_client_that_stops_mid_body_gets_400_and_frees_its_bytes(
    start_server, script
) -> None:
    """Ending the upload early gets 400 naming why; the bytes it held are free again."""
    script.say("Done.")
    limits = {"max_request_body_bytes": MAX_BODY_BYTES_IN_FLIGHT}
    async with start_server(limits=limits) as server:
        url = f"http://127.0.0.1:{server.port}/v1/respond"
        reader, writer = await _post_head(server.port, MAX_BODY_BYTES_IN_FLIGHT)
        try:
            async with asyncio.timeout(5.0):
                assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
                assert await reader.readline() == b"\r\n"
                writer.write(b'{"text": ')
                writer.write_eof()
                status, error = await _answer(reader)
        finally:
            writer.close()
        accepted = await http("POST", url, json_body={"text": "hi"})
    assert status.startswith(b"HTTP/1.1 400")
    assert "closed before the body was complete" in str(error["error"])
    assert accepted.status_code == 200


async def test_a_client_that_half_closes_after_its_body_gets_the_answer(server, script) -> None:
    """A complete body followed by the end of the client's output still gets its reply."""
    script.say("Good evening.")
    body = b'{"text": "Hi there"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /v1/respond HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    writer.write_eof()
    try:
        async with asyncio.timeout(30):
            status, reply = await _answer(reader)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 200")
    assert reply["text"] == "Good evening."


def test_one_body_always_fits_an_idle_budget() -> None:
    """A body larger than the bound is admitted when nothing else is held, and alone."""
    budget = BodyBudget(max_bytes=100)
    assert budget.reserve(150)
    assert not budget.reserve(1)
    budget.release(150)
    assert budget.reserve(60)
    assert budget.reserve(40)
    assert not budget.reserve(1)
    assert budget.held_bytes == 100


async def test_a_running_turn_no_longer_holds_its_body_bytes(start_server, script, gate) -> None:
    """Once its body is read and parsed, a turn that runs on (here in a slow tool) holds none of
    the upload budget: another upload that would not fit beside that body is answered."""
    script.say(tool_calls=[{"name": "slow_thing", "arguments": {}, "id": "callSLOW1"}])
    script.say("Done.")
    script.say("The slow thing is done.")
    budget = 2 * 2**20
    limits = {"max_body_bytes_in_flight": budget, "max_request_body_bytes": budget}
    padded = b'{"text": "Do the slow thing."}' + b" " * (budget * 3 // 4)
    async with start_server(tools=gate.registry(), limits=limits) as server:
        url = f"http://127.0.0.1:{server.port}/v1/respond"
        headers = {"Content-Type": "application/json"}
        slow = asyncio.create_task(http("POST", url, content=padded, headers=headers))
        async with asyncio.timeout(10):
            await gate.started.wait()
        quick = await http(
            "POST", url, content=b'{"text": "hi"}' + b" " * (budget // 2), headers=headers
        )
        gate.release.set()
        first = await slow
    assert quick.status_code == 200, quick.text
    assert quick.json()["text"] == "Done."
    assert first.status_code == 200 and first.json()["text"] == "The slow thing is done."
