"""Plain HTTP on the server's port: the page, /healthz and POST /v1/respond."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from assistant.tools import ToolRegistry, tool
from tests.server.wire import http


def _wav(pcm: np.ndarray, rate_hz: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    out = io.BytesIO()
    sf.write(out, pcm, rate_hz, subtype=subtype, format=fmt)
    return out.getvalue()


def _base(server) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_page_is_served_with_a_strict_policy(server) -> None:
    """GET / returns the single-file page with a Content-Security-Policy."""
    response = await http("GET", _base(server) + "/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "audioWorklet" in response.text
    assert "<script src" not in response.text  # no external assets


async def test_healthz_reports_model_and_sessions(server) -> None:
    """GET /healthz says the model is loaded and how busy the server is."""
    health = (await http("GET", _base(server) + "/healthz")).json()
    assert health["status"] == "ok"
    assert health["model_loaded"] is True
    assert (health["sessions"], health["queue_depth"], health["model_waiting"]) == (0, 0, 0)


async def test_respond_with_a_wav_runs_a_tool(server, script, speech_16k) -> None:
    """POST /v1/respond with a WAV: tool call and result, reply, timings; no transcript is made
    (nor waited for) unless asked."""
    script.hear("What is the weather in Paris today?")
    script.say(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say("It is 21 degrees in Paris.")
    response = await http(
        "POST",
        _base(server) + "/v1/respond",
        content=_wav(speech_16k),
        headers={"Content-Type": "audio/wav"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["transcript"] is None
    assert "transcription" not in script.served
    assert body["text"] == "It is 21 degrees in Paris."
    assert [(c["name"], c["arguments"]) for c in body["tool_calls"]] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert body["tool_results"][0]["ok"] is True
    assert body["tool_results"][0]["content"]["temperature_c"] == 21
    assert body["timings"]["total_ms"] > 0
    assert body["timings"]["model_calls"] == 2


async def test_respond_with_transcript_true_waits_for_the_transcript(
    server, script, speech_16k
) -> None:
    """?transcript=true: the answer carries what the user said (made after the reply)."""
    script.hear("What is the weather in Paris today?")
    script.say("It is sunny.")
    response = await http(
        "POST",
        _base(server) + "/v1/respond?transcript=true",
        content=_wav(speech_16k),
        headers={"Content-Type": "audio/wav"},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["transcript"], body["text"]) == (
        "What is the weather in Paris today?",
        "It is sunny.",
    )
    assert script.served == ["chat", "transcription"]


async def test_respond_refuses_a_transcript_parameter_that_is_not_a_boolean(
    server, script, speech_16k
) -> None:
    """?transcript=maybe is a 400 that names the parameter; the model is not asked."""
    response = await http(
        "POST",
        _base(server) + "/v1/respond?transcript=maybe",
        content=_wav(speech_16k),
        headers={"Content-Type": "audio/wav"},
    )
    assert response.status_code == 400
    assert "transcript" in response.json()["error"]["message"]
    assert script.served == []


async def test_respond_accepts_flac_at_any_rate(server, script, speech_16k) -> None:
    """A FLAC body at 44.1 kHz is understood as well."""
    script.say("Hello.")
    pcm = np.asarray(soxr.resample(speech_16k, 16000, 44100), dtype=np.int16)
    response = await http(
        "POST",
        _base(server) + "/v1/respond",
        content=_wav(pcm, 44100, fmt="FLAC"),
        headers={"Content-Type": "audio/flac"},
    )
    assert response.status_code == 200
    assert response.json()["text"] == "Hello."


async def test_respond_with_json_text(server, script) -> None:
    """A JSON body with text gets the reply without a transcript."""
    script.say("Good evening.")
    response = await http("POST", _base(server) + "/v1/respond", json_body={"text": "Hi there"})
    assert response.status_code == 200
    assert (response.json()["transcript"], response.json()["text"]) == (None, "Good evening.")


@pytest.mark.parametrize(
    ("content", "content_type", "status", "phrase"),
    [
        (b"RIFF....WAVEnot really", "audio/wav", 400, ""),
        (b'{"txt": "hi"}', "application/json", 400, "text"),
        (b"hello", "text/plain", 415, "application/json"),
    ],
    ids=["unreadable-wav", "json-without-text", "unsupported-type"],
)
async def test_respond_refuses_bad_bodies(server, content, content_type, status, phrase) -> None:
    """Bad bodies get a 4xx JSON error saying what to send."""
    response = await http(
        "POST",
        _base(server) + "/v1/respond",
        content=content,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == status
    assert phrase in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"hello, this is text", "audio/wav"), (b'{"text": "hi"}', "application/octet-stream")],
    ids=["text-as-wav", "json-as-octet-stream"],
)
async def test_respond_says_which_audio_it_expects(server, content, content_type) -> None:
    """A body that is not audio gets a 400 naming the accepted formats, no Python object repr."""
    response = await http(
        "POST",
        _base(server) + "/v1/respond",
        content=content,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message == (
        "the request body is not readable audio (Format not recognised); expected WAV, FLAC, "
        "OGG (Vorbis or Opus) or MP3 audio: 8- to 32-bit integer or float samples, any sample "
        "rate, mono or more channels"
    )


async def test_respond_refuses_a_body_over_the_limit(start_server) -> None:
    """A body larger than max_request_body_bytes gets 413 before it is read."""
    async with start_server(limits={"max_request_body_bytes": 1000}) as server:
        response = await http(
            "POST",
            _base(server) + "/v1/respond",
            content=b"\0" * 5000,
            headers={"Content-Type": "audio/wav"},
        )
    assert response.status_code == 413


async def test_respond_needs_the_token(start_server, script) -> None:
    """With a token configured, /v1/respond answers 401 without it and 200 with it."""
    script.say("Done.")
    async with start_server(token="tok") as server:
        url = _base(server) + "/v1/respond"
        refused = await http("POST", url, json_body={"text": "hi"})
        accepted = await http(
            "POST", url, json_body={"text": "hi"}, headers={"Authorization": "Bearer tok"}
        )
    assert refused.status_code == 401
    assert accepted.status_code == 200


async def test_cross_site_post_is_refused(server) -> None:
    """A browser POST from a foreign Origin gets 403 (no cross-site turns)."""
    response = await http(
        "POST",
        _base(server) + "/v1/respond",
        json_body={"text": "unlock the door"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/respond", 405), ("POST", "/healthz", 405), ("GET", "/nope", 404)],
)
async def test_wrong_method_or_path(server, method, path, status) -> None:
    """Wrong methods get 405 and unknown paths 404."""
    response = await http(method, _base(server) + path)
    assert response.status_code == status


async def test_expect_100_continue_is_answered(server, script) -> None:
    """A client that sends Expect: 100-continue (curl, large bodies) is told to go on at once."""
    script.say("Fine.")
    body = b'{"text": "hello"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /v1/respond HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    async with asyncio.timeout(0.5):
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
    writer.write(body)
    async with asyncio.timeout(30):
        await reader.readline()
        status = await reader.readline()
    writer.close()
    assert status.startswith(b"HTTP/1.1 200")


async def test_shutdown_cancels_a_respond_turn_that_outlasts_the_grace(
    start_server, script
) -> None:
    """On shutdown a POST /v1/respond turn still running after the grace period gets 503."""
    script.say(tool_calls=[{"name": "slow_lookup", "arguments": {"query": "tea"}}])
    script.say("Found it.")
    started = asyncio.Event()

    @tool
    async def slow_lookup(query: str) -> dict[str, str]:
        """Look something up in a slow archive.

        Args:
            query: What to look for.
        """
        started.set()
        await asyncio.sleep(1.0)
        return {"query": query, "found": "yes"}

    tools = ToolRegistry.from_functions([slow_lookup])
    async with start_server(tools=tools, limits={"shutdown_grace_s": 0.05}) as server:
        url = _base(server) + "/v1/respond"
        request = asyncio.create_task(http("POST", url, json_body={"text": "Find tea."}))
        await asyncio.wait_for(started.wait(), 30)
        await server.shutdown()
        response = await request
    assert response.status_code == 503
    assert "shutting down" in response.json()["error"]["message"]
