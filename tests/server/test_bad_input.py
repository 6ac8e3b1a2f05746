"""Bad input and abusive clients: each gets its error or close code; others keep being served."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server.wire import next_event, open_session, pcm16_b64, ws_url

MANUAL_16K = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}
        },
    },
}


async def _assert_still_serving(server) -> None:
    """A fresh client can open a session and gets answers."""
    ws = await open_session(server)
    await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
    assert (await next_event(ws))["type"] == "input_audio_buffer.cleared"
    await ws.close()


async def _error_for(server, frame: str) -> dict:
    ws = await open_session(server)
    await ws.send(frame)
    error = await next_event(ws)
    assert error["type"] == "error"
    # The same connection still works after the error.
    await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
    assert (await next_event(ws))["type"] == "input_audio_buffer.cleared"
    await ws.close()
    return error["error"]


async def test_non_json_text_frame_gets_an_error_and_the_session_continues(server) -> None:
    """A text frame that is not JSON yields error invalid_json; the connection stays open."""
    error = await _error_for(server, "this is not json")
    assert error["code"] == "invalid_json"


async def test_unknown_event_type_is_reported_with_its_event_id(server) -> None:
    """An unknown event type yields unknown_event_type naming the client's event_id."""
    error = await _error_for(
        server, json.dumps({"type": "output_audio_buffer.clear", "event_id": "e7"})
    )
    assert (error["code"], error["event_id"]) == ("unknown_event_type", "e7")


async def test_missing_fields_are_named(server) -> None:
    """An append without audio yields missing_required_parameter with param 'audio'."""
    frame = json.dumps({"type": "input_audio_buffer.append", "event_id": "e8"})
    error = await _error_for(server, frame)
    assert (error["code"], error["param"], error["event_id"]) == (
        "missing_required_parameter",
        "audio",
        "e8",
    )


async def test_base64_garbage_is_refused(server) -> None:
    """Audio that is not base64 yields invalid_audio."""
    frame = json.dumps({"type": "input_audio_buffer.append", "event_id": "e9", "audio": "%%%"})
    error = await _error_for(server, frame)
    assert (error["code"], error["event_id"]) == ("invalid_audio", "e9")


async def test_odd_length_pcm_is_refused(server) -> None:
    """PCM16 with an odd byte count yields invalid_audio."""
    frame = json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"})  # 3 bytes
    error = await _error_for(server, frame)
    assert error["code"] == "invalid_audio"
    assert "even number of bytes" in error["message"]


async def test_a_20_mb_frame_closes_that_connection_with_1009(server) -> None:
    """A frame over max_size closes the connection with 1009; the server keeps serving."""
    ws = await open_session(server)
    await ws.send("x" * (20 * 2**20))
    with pytest.raises(ConnectionClosed) as caught:
        await next_event(ws)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
    await _assert_still_serving(server)


async def test_wrong_token_is_refused_with_401(start_server) -> None:
    """With a token configured, a wrong token gets HTTP 401 and no session."""
    async with start_server(token="s3cret") as server:
        with pytest.raises(InvalidStatus) as caught:
            await connect(ws_url(server), additional_headers={"Authorization": "Bearer nope"})
        assert caught.value.response.status_code == 401


async def test_missing_token_is_refused_with_401(start_server) -> None:
    """With a token configured, no token at all gets HTTP 401."""
    async with start_server(token="s3cret") as server:
        with pytest.raises(InvalidStatus) as caught:
            await connect(ws_url(server))
        assert caught.value.response.status_code == 401


@pytest.mark.parametrize(
    ("query", "headers", "subprotocols"),
    [
        ("", {"Authorization": "Bearer s3cret"}, None),
        ("?token=s3cret", {}, None),
        ("", {}, ["realtime", "openai-insecure-api-key.s3cret"]),
    ],
    ids=["bearer-header", "query-parameter", "subprotocol"],
)
async def test_right_token_is_accepted_each_way(start_server, query, headers, subprotocols) -> None:
    """The token works as a Bearer header, a query parameter, or a Realtime subprotocol."""
    async with start_server(token="s3cret") as server:
        ws = await connect(
            ws_url(server, query), additional_headers=headers, subprotocols=subprotocols
        )
        assert (await next_event(ws))["type"] == "session.created"
        await ws.close()


async def test_disallowed_origin_is_refused_with_403(start_server) -> None:
    """A browser Origin that is neither this server nor allowed gets HTTP 403."""
    async with start_server(allowed_origins=("https://home.example",)) as server:
        with pytest.raises(InvalidStatus) as caught:
            await connect(ws_url(server), origin="https://evil.example")  # type: ignore[arg-type]
        assert caught.value.response.status_code == 403
        ws = await connect(ws_url(server), origin="https://home.example")  # type: ignore[arg-type]
        assert (await next_event(ws))["type"] == "session.created"
        await ws.close()


async def test_the_servers_own_page_origin_is_allowed(server) -> None:
    """The page served by this server may connect (same Origin as the Host)."""
    origin = f"http://127.0.0.1:{server.port}"
    ws = await connect(ws_url(server), origin=origin)  # type: ignore[arg-type]
    assert (await next_event(ws))["type"] == "session.created"
    await ws.close()


async def test_foreign_host_without_token_is_refused(server) -> None:
    """Without a token, a non-loopback Host header (DNS rebinding) gets HTTP 403."""
    url = f"ws://attacker.example:{server.port}/v1/realtime"
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, host="127.0.0.1", port=server.port)
    assert caught.value.response.status_code == 403


async def test_too_many_sessions_close_with_1013(start_server) -> None:
    """Past max_sessions a new connection is closed with 1013 and a reason."""
    async with start_server(limits={"max_sessions": 1}) as server:
        first = await open_session(server)
        extra = await connect(ws_url(server))
        with pytest.raises(ConnectionClosed) as caught:
            await extra.recv()
        assert caught.value.rcvd is not None
        assert caught.value.rcvd.code == 1013
        assert "try again later" in caught.value.rcvd.reason
        await first.close()
        await asyncio.sleep(0.05)
        await _assert_still_serving(server)


async def test_audio_cap_refuses_the_chunk_and_keeps_the_buffer(start_server) -> None:
    """Past the buffered-audio cap an append gets input_audio_buffer_full; earlier audio stays."""
    async with start_server(limits={"max_buffered_audio_s": 1.0}) as server:
        ws = await open_session(server)
        await ws.send(json.dumps(MANUAL_16K))
        await next_event(ws, "session.updated")
        tone = (np.sin(np.arange(12_800) / 5) * 8000).astype(np.int16)  # 0.8 s
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(tone)}))
        await ws.send(
            json.dumps(
                {"type": "input_audio_buffer.append", "event_id": "big", "audio": pcm16_b64(tone)}
            )
        )
        error = await next_event(ws, "error")
        assert (error["error"]["code"], error["error"]["event_id"]) == (
            "input_audio_buffer_full",
            "big",
        )
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        committed = await next_event(ws)
        assert committed["type"] == "input_audio_buffer.committed"
        await ws.close()


async def test_commit_of_an_empty_buffer_is_an_error(server) -> None:
    """Committing without audio yields input_audio_buffer_commit_empty."""
    ws = await open_session(server)
    await ws.send(json.dumps(MANUAL_16K))
    await next_event(ws, "session.updated")
    await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c1"}))
    error = await next_event(ws, "error")
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    await ws.close()


async def test_client_that_never_reads_is_disconnected(start_server) -> None:
    """A client that stops reading is disconnected once its send queue is full."""
    limits = {"send_queue_max_bytes": 256 * 1024, "max_unanswered_text_chars": 50_000_000}
    async with start_server(limits=limits) as server:
        # max_queue=1: the client's websockets stops reading the socket after one message.
        ws = await connect(ws_url(server), max_queue=1, max_size=None)
        text = "word " * 80_000  # each echo (conversation.item.created) is ~400 kB
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        frame = json.dumps({"type": "conversation.item.create", "item": item})
        async with asyncio.timeout(30):
            with contextlib.suppress(ConnectionClosed):
                for _ in range(100):
                    await ws.send(frame)
            await ws.wait_closed()
        assert server.health()["slow_clients_disconnected"] == 1
        await _assert_still_serving(server)


async def test_idle_connection_is_closed(start_server) -> None:
    """A connection that sends nothing for idle_timeout_s is closed, saying why."""
    async with start_server(limits={"idle_timeout_s": 0.3}) as server:
        ws = await open_session(server)
        async with asyncio.timeout(5):
            await ws.wait_closed()
        assert ws.close_code == 1000
        assert "idle" in (ws.close_reason or "")


async def test_shutdown_closes_sessions_with_1001(start_server) -> None:
    """A graceful shutdown closes open sessions with 1001 (going away)."""
    async with start_server() as server:
        ws = await open_session(server)
        await server.shutdown()
        async with asyncio.timeout(5):
            await ws.wait_closed()
        assert ws.close_code == 1001
