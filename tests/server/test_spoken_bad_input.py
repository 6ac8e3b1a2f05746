"""Spoken replies asked for wrongly: each gets a clear error naming the field; nothing changes
and the session goes on."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.server.wire import events_until, next_event, open_session

SPEAK = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}


def _update(session: dict[str, Any]) -> str:
    return json.dumps({"type": "session.update", "session": {"type": "realtime", **session}})


def _user_text(text: str) -> str:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})


def _truncate(item_id: str, audio_end_ms: int, content_index: int = 0) -> str:
    return json.dumps(
        {
            "type": "conversation.item.truncate",
            "event_id": "trunc1",
            "item_id": item_id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
        }
    )


async def _refused(ws, frame: str) -> dict[str, Any]:
    """Send ``frame``, expect an error; then check the session still answers as before."""
    await ws.send(frame)
    error = await next_event(ws)
    assert error["type"] == "error", error
    await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
    updated = await next_event(ws, "session.updated")
    assert updated["session"]["output_modalities"] == ["text"]
    assert updated["session"]["audio"]["output"]["format"]["rate"] == 24000
    assert updated["session"]["audio"]["output"]["voice"] is None
    return dict(error["error"])


@pytest.mark.parametrize(
    ("session", "param", "ga"),
    [
        ({"modalities": ["audio", "text"]}, "session.modalities", "session.output_modalities"),
        ({"voice": "alloy"}, "session.voice", "session.audio.output.voice"),
        ({"input_audio_format": "pcm16"}, "session.input_audio_format", "audio.input.format"),
        ({"output_audio_format": "pcm16"}, "session.output_audio_format", "audio.output.format"),
        (
            {"turn_detection": {"type": "server_vad"}},
            "session.turn_detection",
            "session.audio.input.turn_detection",
        ),
        (
            {"input_audio_transcription": {"model": "whisper-1"}},
            "session.input_audio_transcription",
            "session.audio.input.transcription",
        ),
    ],
)
async def test_beta_session_fields_are_refused_naming_the_ga_field(
    server, session, param, ga
) -> None:
    """A beta-era session field is an unknown_parameter error that names its GA field."""
    ws = await open_session(server)
    error = await _refused(ws, _update(session))
    await ws.close()
    assert (error["code"], error["param"]) == ("unknown_parameter", param)
    assert ga in error["message"] and "beta" in error["message"]


async def test_a_beta_response_create_field_is_refused_naming_the_ga_field(server) -> None:
    """response.create with the beta ``modalities`` is refused, pointing to output_modalities."""
    ws = await open_session(server)
    await ws.send(_user_text("Hello."))
    await next_event(ws, "conversation.item.created")
    frame = json.dumps({"type": "response.create", "response": {"modalities": ["audio"]}})
    error = await _refused(ws, frame)
    await ws.close()
    assert error["param"] == "response.modalities"
    assert "response.output_modalities" in error["message"]


@pytest.mark.parametrize(
    ("output", "param", "words"),
    [
        ({"format": {"type": "audio/pcmu"}}, "session.audio.output.format.type", "G.711"),
        ({"format": {"type": "audio/pcm", "rate": 44100}}, "session.audio.output.format.rate", ""),
        ({"voice": {"id": "voice_1234"}}, "session.audio.output.voice", "custom voices"),
        ({"speed": 3.0}, "session.audio.output.speed", ""),
    ],
)
async def test_unsupported_output_options_are_refused(server, output, param, words) -> None:
    """G.711, other rates, custom voices and speeds beyond 0.25-1.5 are invalid_value errors."""
    ws = await open_session(server)
    frame = _update({"output_modalities": ["audio"], "audio": {"output": output}})
    error = await _refused(ws, frame)
    await ws.close()
    assert (error["code"], error["param"]) == ("invalid_value", param)
    assert words in error["message"]


async def test_an_unknown_voice_is_refused_and_nothing_changes(server) -> None:
    """A voice that is neither OpenAI's nor installed: invalid_value, the update not applied."""
    ws = await open_session(server)
    frame = _update({"output_modalities": ["audio"], "audio": {"output": {"voice": "xx-nope"}}})
    error = await _refused(ws, frame)
    await ws.close()
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.output.voice")
    assert "espeak-ng --voices" in error["message"]


async def test_asking_for_both_modalities_is_refused(server) -> None:
    """output_modalities ["text", "audio"] is refused: audio replies carry their transcript."""
    ws = await open_session(server)
    error = await _refused(ws, _update({"output_modalities": ["text", "audio"]}))
    await ws.close()
    assert error["param"] == "session.output_modalities"


async def _spoken_reply(ws, script, text: str) -> dict[str, Any]:
    script.say(text)
    await ws.send(json.dumps(SPEAK))
    await next_event(ws, "session.updated")
    await ws.send(_user_text("Talk to me."))
    await ws.send(json.dumps({"type": "response.create"}))
    events = await events_until(ws, "response.done")
    return dict(events[-1]["response"]["output"][0])


async def test_truncating_an_unknown_item_is_refused(server, script) -> None:
    """An item id no spoken response made: item_not_found, naming the client's event_id."""
    ws = await open_session(server)
    await _spoken_reply(ws, script, "Hello there.")
    await ws.send(_truncate("item_nope", 100))
    error = (await next_event(ws, "error"))["error"]
    await ws.close()
    assert (error["code"], error["param"], error["event_id"]) == (
        "item_not_found",
        "item_id",
        "trunc1",
    )


async def test_truncating_beyond_the_audio_is_refused_and_keeps_the_history(server, script) -> None:
    """audio_end_ms past the item's audio: invalid_value; the next prompt keeps the reply."""
    ws = await open_session(server)
    item = await _spoken_reply(ws, script, "Hello there, my friend.")
    await ws.send(_truncate(item["id"], 60_000))
    error = (await next_event(ws, "error"))["error"]
    script.say("Yes.")
    await ws.send(_user_text("Really?"))
    await ws.send(json.dumps({"type": "response.create"}))
    await events_until(ws, "response.done")
    await ws.close()
    assert (error["code"], error["param"]) == ("invalid_value", "audio_end_ms")
    assert "beyond the item's audio" in error["message"]
    assert "Hello there, my friend." in script.prompts[-1]


async def test_truncating_another_content_part_is_refused(server, script) -> None:
    """content_index other than 0 is refused: a spoken message has one audio part."""
    ws = await open_session(server)
    item = await _spoken_reply(ws, script, "Hello there.")
    await ws.send(_truncate(item["id"], 100, content_index=1))
    error = (await next_event(ws, "error"))["error"]
    await ws.close()
    assert (error["code"], error["param"]) == ("invalid_value", "content_index")


async def test_truncating_a_text_reply_is_refused(server, script) -> None:
    """A written (not spoken) message has no audio to truncate: item_not_found."""
    script.say("Hello there.")
    ws = await open_session(server)
    await ws.send(_user_text("Hi."))
    await ws.send(json.dumps({"type": "response.create"}))
    events = await events_until(ws, "response.done")
    await ws.send(_truncate(events[-1]["response"]["output"][0]["id"], 0))
    error = (await next_event(ws, "error"))["error"]
    await ws.close()
    assert error["code"] == "item_not_found"


async def test_truncating_while_the_reply_is_still_spoken_is_refused(server, script) -> None:
    """A truncate of a response that still runs (and was not cancelled) is refused; after
    response.cancel the same truncate is accepted."""
    script.say(" ".join(["This sentence goes on for quite a while."] * 40))
    ws = await open_session(server, max_size=None)
    await ws.send(json.dumps(SPEAK))
    await next_event(ws, "session.updated")
    await ws.send(_user_text("Talk."))
    await ws.send(json.dumps({"type": "response.create"}))
    delta = await next_event(ws, "response.output_audio.delta")
    await ws.send(_truncate(delta["item_id"], 0))
    refused = (await next_event(ws, "error"))["error"]
    await ws.send(json.dumps({"type": "response.cancel"}))
    await ws.send(_truncate(delta["item_id"], 0))
    truncated = await next_event(ws, "conversation.item.truncated")
    await ws.close()
    assert refused["code"] == "response_in_progress"
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (delta["item_id"], 0)
    assert len(base64.b64decode(delta["delta"])) > 0
