"""POST /v1/audio/transcriptions with the official openai SDK, on a real server."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from openai import AsyncOpenAI, BadRequestError

from assistant.config import ServerSettings, TranscriptionSettings
from assistant.model.worker import ModelWorker
from assistant.server.assistant_server import AssistantServer
from assistant.testing.forced import ScriptedReplies
from tests.transcription.recordings import recording

TOKEN = "transcription-token"
TEXTS = ["First sentence.", "Second sentence.", "Third sentence.", "Fourth sentence."]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def talk_wav() -> bytes:
    """Four spoken sentences with one-second pauses, as WAV bytes (about 19 s)."""
    out = io.BytesIO()
    sf.write(out, recording(4).pcm, 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def forced_worker(tiny_model_dir: Path) -> Any:
    """A tiny-model worker whose transcripts come from the test's script, one per piece."""
    holder: dict[str, Callable[[int], list[Any]]] = {}
    worker = ModelWorker.load(
        tiny_model_dir, device="cpu", logits_processor_factory=lambda n: holder["play"](n)
    )
    yield worker, holder
    worker.close()


@pytest.fixture
async def server(forced_worker) -> AsyncIterator[AssistantServer]:
    """A token-protected server whose model says TEXTS, one per piece (one sentence each)."""
    worker, holder = forced_worker
    script = ScriptedReplies(worker.tokenizer)
    for text in TEXTS:
        script.hear(f"lang:en {text}")
    holder["play"] = script.logits_processors
    settings = TranscriptionSettings(max_piece_s=5.0, batch_pieces=2)
    server_settings = ServerSettings(
        port=0,
        token=TOKEN,
        close_timeout_s=1.0,
        shutdown_grace_s=2.0,
        max_request_body_bytes=2**20,
    )
    async with AssistantServer(
        worker, settings=server_settings, transcription_settings=settings
    ) as running:
        yield running


def client(server: AssistantServer, token: str = TOKEN) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=token, base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0)


async def test_sdk_json_gives_the_whole_text(server, talk_wav) -> None:
    """audio.transcriptions.create returns the pieces' texts joined, and the language."""
    result = await client(server).audio.transcriptions.create(
        file=("talk.wav", talk_wav), model="voxtral"
    )
    assert result.text == " ".join(TEXTS)
    assert result.language == "en"  # type: ignore[attr-defined]


async def test_sdk_verbose_json_gives_segments_with_times(server, talk_wav) -> None:
    """verbose_json: one segment per piece with start and end seconds, language named."""
    result = await client(server).audio.transcriptions.create(
        file=("talk.wav", talk_wav), model="voxtral", response_format="verbose_json"
    )
    assert result.language == "english"
    assert [s.text for s in result.segments or []] == TEXTS
    assert all(0 <= s.start < s.end <= result.duration for s in result.segments or [])


@pytest.mark.parametrize(
    ("response_format", "start"),
    [("srt", "1\n00:00:0"), ("vtt", "WEBVTT\n\n00:00:0"), ("text", "First sentence. Second")],
)
async def test_sdk_text_formats(server, talk_wav, response_format: str, start: str) -> None:
    """srt, vtt and text come back as the documents themselves."""
    result = await client(server).audio.transcriptions.create(
        file=("talk.wav", talk_wav),
        model="voxtral",
        response_format=response_format,  # type: ignore[arg-type]
    )
    assert isinstance(result, str)
    assert result.startswith(start)
    assert "Fourth sentence." in result


async def test_sdk_stream_gives_a_delta_per_piece_then_the_text(server, talk_wav) -> None:
    """stream=True: transcript.text.delta events in order, then transcript.text.done."""
    stream = await client(server).audio.transcriptions.create(
        file=("talk.wav", talk_wav), model="voxtral", stream=True
    )
    events = [event async for event in stream]
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert "".join(deltas) == " ".join(TEXTS)
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == " ".join(TEXTS)


async def test_a_wrong_token_is_refused_before_the_body(server, talk_wav) -> None:
    """Without the server's token the request gets 401 (the upload is never read)."""
    with pytest.raises(Exception, match="401"):
        await client(server, token="wrong").audio.transcriptions.create(
            file=("talk.wav", talk_wav), model="voxtral"
        )


async def test_a_file_that_is_not_audio_is_a_clear_400(server) -> None:
    """Text posted as the file: 400 saying which formats are accepted."""
    with pytest.raises(BadRequestError, match="not readable audio"):
        await client(server).audio.transcriptions.create(
            file=("notes.wav", b"not audio at all"), model="voxtral"
        )


async def test_an_unknown_language_is_a_clear_400(server, talk_wav) -> None:
    """language must be an ISO 639-1 code."""
    with pytest.raises(BadRequestError, match="ISO 639-1"):
        await client(server).audio.transcriptions.create(
            file=("talk.wav", talk_wav), model="voxtral", language="klingon"
        )


async def test_an_unsupported_field_is_named(server, talk_wav) -> None:
    """A field this server does not implement (prompt) is refused by name."""
    with pytest.raises(BadRequestError, match="prompt: is not supported"):
        await client(server).audio.transcriptions.create(
            file=("talk.wav", talk_wav), model="voxtral", prompt="names: Ada"
        )


async def _post(server: AssistantServer, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(
            f"http://127.0.0.1:{server.port}/v1/audio/transcriptions", headers=headers, **kwargs
        )


async def test_a_form_without_a_file_is_a_clear_400(server) -> None:
    """A multipart form with only 'model' says the file is missing."""
    response = await _post(server, files={"model": (None, "voxtral")})
    assert response.status_code == 400
    assert "no 'file'" in response.json()["error"]["message"]


async def test_a_body_that_is_not_multipart_is_415(server, talk_wav) -> None:
    """Raw audio instead of a form: 415 naming what to send."""
    response = await _post(server, content=talk_wav, headers={"Content-Type": "audio/wav"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]["message"]


async def test_a_malformed_multipart_body_is_a_clear_400(server) -> None:
    """A body that breaks the multipart syntax is a 400, and the server goes on serving."""
    bad = b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nvoxtral\r\n--abc'
    response = await _post(
        server, content=bad, headers={"Content-Type": "multipart/form-data; boundary=xyz"}
    )
    assert response.status_code == 400
    assert (await _post(server, files={"model": (None, "voxtral")})).status_code == 400


async def test_an_upload_over_the_body_limit_is_413(server) -> None:
    """A file over the server's body limit is refused from its Content-Length."""
    big = np.zeros(16000 * 40, dtype=np.int16).tobytes()  # 1.3 MB > the 1 MiB limit
    response = await _post(server, files={"file": ("big.wav", big), "model": (None, "v")})
    assert response.status_code == 413


async def test_get_is_not_allowed(server) -> None:
    """The endpoint takes POST only."""
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"http://127.0.0.1:{server.port}/v1/audio/transcriptions",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 405
    assert json.loads(response.text)["error"]["message"] == "use POST here"


async def test_a_temperature_above_zero_is_refused(server, talk_wav) -> None:
    """Transcription is greedy: temperature 0.4 is a 400, not silently ignored."""
    with pytest.raises(BadRequestError, match="greedy"):
        await client(server).audio.transcriptions.create(
            file=("talk.wav", talk_wav), model="voxtral", temperature=0.4
        )


async def test_max_completion_tokens_cuts_every_piece(server, talk_wav) -> None:
    """vLLM's max_completion_tokens (what a chained RemoteWorker sends) limits each piece."""
    result = await client(server).audio.transcriptions.create(
        file=("talk.wav", talk_wav),
        model="voxtral",
        temperature=0.0,
        response_format="verbose_json",
        extra_body={"max_completion_tokens": 3},
    )
    segments = result.segments or []
    assert segments
    assert all(s.model_extra["finish_reason"] == "length" for s in segments)  # type: ignore[index]
    assert "Fourth sentence." not in result.text
