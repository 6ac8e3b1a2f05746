"""Bad input and dropped clients never stop the server or other connections."""

from __future__ import annotations

import asyncio
import json

from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.ping import Ping

from tests.server.wyoming import ha

HOST = "127.0.0.1"


async def raw_exchange(port: int, data: bytes) -> list[Event]:
    """Send raw bytes; every event the server answers until it closes the connection."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    events = []
    try:
        while (event := await asyncio.wait_for(async_read_event(reader), ha.WAIT_S)) is not None:
            events.append(event)
    finally:
        writer.close()
    return events


async def test_bytes_that_are_not_events_get_an_error_then_the_end(wyoming) -> None:
    """A header line that is not JSON: an error event, the connection closes, the server goes on."""
    (event,) = await raw_exchange(wyoming.port, b"this is not wyoming\n")
    error = Error.from_event(event)
    assert error.code == "invalid_event" and "not JSON" in error.text
    assert (await ha.describe(HOST, wyoming.port)).asr


async def test_an_oversize_payload_is_refused_before_it_is_read(wyoming) -> None:
    """A payload_length over the limit is refused at once, without waiting for the bytes."""
    header = {"type": "audio-chunk", "data": {"rate": 16000}, "payload_length": 1 << 40}
    (event,) = await raw_exchange(wyoming.port, json.dumps(header).encode() + b"\n")
    assert "payload_length" in Error.from_event(event).text
    assert (await ha.describe(HOST, wyoming.port)).asr


async def test_an_event_missing_its_fields_is_refused_and_the_connection_goes_on(wyoming) -> None:
    """audio-start without a rate gets an error naming the field; describe still works after."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(Event(type="audio-start", data={"width": 2, "channels": 1}))
        error = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
        await client.write_event(Event(type="describe"))
        info = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert error is not None and "'rate'" in Error.from_event(error).text
    assert info is not None and info.type == "info"


async def test_unknown_events_are_ignored_and_ping_is_answered(wyoming) -> None:
    """An event type the server does not serve is dropped silently (Wyoming's convention)."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(Event(type="select-program", data={"name": "x"}))
        await client.write_event(Event(type="run-satellite"))
        await client.write_event(Ping(text="hi").event())
        pong = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert pong is not None and (pong.type, pong.data.get("text")) == ("pong", "hi")


async def test_a_client_dropping_mid_request_harms_no_one(wyoming, script, command_16k) -> None:
    """A client that vanishes mid-stream or mid-turn: the next clients are served as usual."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(AudioStart(16000, 2, 1).event())
        await client.write_event(AudioChunk(16000, 2, 1, ha.chunks_of(command_16k)[0]).event())
    script.say("Gone already.")
    _, writer = await asyncio.open_connection(HOST, wyoming.port)
    writer.write(b'{"type": "transcript", "data": {"text": "hello"}}\n')
    await writer.drain()
    writer.close()
    script.hear("Turn on the kitchen light.")
    result = await ha.transcribe(HOST, wyoming.port, command_16k)
    assert result.transcript is not None and result.transcript.text == "Turn on the kitchen light."


async def test_an_idle_client_is_disconnected(start_wyoming) -> None:
    """A connection that sends nothing for idle_timeout_s is closed by the server."""
    async with (
        start_wyoming(idle_timeout_s=0.5) as server,
        AsyncTcpClient(HOST, server.port) as client,
    ):
        end = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert end is None


async def test_connections_beyond_the_limit_wait_their_turn(start_wyoming) -> None:
    """With max_connections 1, a second client is served once the first one leaves."""
    async with start_wyoming(max_connections=1) as server:
        first = AsyncTcpClient(HOST, server.port)
        await first.connect()
        second = asyncio.create_task(ha.describe(HOST, server.port))
        done, _ = await asyncio.wait({second}, timeout=1.0)
        assert not done
        await first.disconnect()
        assert (await asyncio.wait_for(second, ha.WAIT_S)).asr
