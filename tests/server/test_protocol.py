"""Client events are parsed once at the edge; bad ones become clear protocol errors."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from assistant.server.realtime.protocol import (
    ConversationItemCreate,
    FunctionCallOutputItem,
    InputAudioBufferAppend,
    ProtocolError,
    SessionUpdate,
    decode_pcm16,
    error_event,
    parse_client_event,
)
from assistant.server.realtime.session_state import SessionState


def _error(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(frame)
    return caught.value


def _session(frame: dict) -> SessionUpdate:
    event = parse_client_event(json.dumps({"type": "session.update", "session": frame}))
    assert isinstance(event, SessionUpdate)
    return event


def test_append_parses_into_a_typed_event() -> None:
    """A valid append becomes an InputAudioBufferAppend with its event_id."""
    event = parse_client_event(
        '{"type": "input_audio_buffer.append", "event_id": "e1", "audio": "AAA="}'
    )
    assert isinstance(event, InputAudioBufferAppend)
    assert (event.event_id, event.audio) == ("e1", "AAA=")


def test_non_json_text_is_invalid_json() -> None:
    """A text frame that is not JSON is refused as invalid_json."""
    assert _error("hello {").code == "invalid_json"


def test_json_that_is_not_an_object_is_refused() -> None:
    """A JSON array is not an event."""
    assert _error("[1, 2]").code == "invalid_json"


def test_binary_frames_are_refused() -> None:
    """Binary frames are not part of the protocol."""
    assert _error(b'{"type": "response.create"}').code == "invalid_json"


def test_unknown_event_type_names_the_offending_event() -> None:
    """An unknown type is refused with the client's event_id and the supported types."""
    error = _error('{"type": "conversation.item.delete", "event_id": "evt_9"}')
    assert error.code == "unknown_event_type"
    assert error.event_id == "evt_9"
    assert "input_audio_buffer.append" in error.message


def test_missing_type_is_a_missing_parameter() -> None:
    """An object without 'type' is refused with param 'type'."""
    error = _error('{"event_id": "x"}')
    assert (error.code, error.param, error.event_id) == ("missing_required_parameter", "type", "x")


def test_missing_field_names_the_parameter() -> None:
    """An append without audio names 'audio' as the missing parameter."""
    error = _error('{"type": "input_audio_buffer.append", "event_id": "e2"}')
    assert (error.code, error.param, error.event_id) == (
        "missing_required_parameter",
        "audio",
        "e2",
    )


def test_function_call_output_needs_a_call_id() -> None:
    """A function_call_output item without call_id is refused, naming call_id."""
    frame = {"type": "conversation.item.create", "item": {"type": "function_call_output"}}
    error = _error(json.dumps(frame))
    assert error.code == "missing_required_parameter"
    assert error.param is not None and error.param.endswith("call_id")


def test_function_call_output_item_parses() -> None:
    """A complete function_call_output item becomes a typed item."""
    frame = {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "abc123XYZ", "output": "{}"},
    }
    event = parse_client_event(json.dumps(frame))
    assert isinstance(event, ConversationItemCreate)
    assert isinstance(event.item, FunctionCallOutputItem)
    assert event.item.call_id == "abc123XYZ"


def test_an_unknown_turn_detection_is_refused() -> None:
    """Only server_vad and semantic_vad turn detection are offered; bad eagerness is refused."""
    for vad in ({"type": "magic_vad"}, {"type": "semantic_vad", "eagerness": "very"}):
        frame = {"type": "realtime", "audio": {"input": {"turn_detection": vad}}}
        error = _error(json.dumps({"type": "session.update", "session": frame}))
        assert error.code == "invalid_value"
        assert "turn_detection" in (error.param or "")


def test_a_bad_turn_detection_field_is_named_as_the_client_wrote_it() -> None:
    """param is the field's path in the event, without the union's type tag."""
    for vad, field in (
        ({"type": "server_vad", "silence_duration_ms": -1}, "silence_duration_ms"),
        ({"type": "semantic_vad", "eagerness": "very"}, "eagerness"),
    ):
        frame = {"type": "realtime", "audio": {"input": {"turn_detection": vad}}}
        error = _error(json.dumps({"type": "session.update", "session": frame}))
        assert error.param == f"session.audio.input.turn_detection.{field}"


def test_semantic_vad_is_the_server_vad_with_an_eager_end_of_turn() -> None:
    """semantic_vad's eagerness reaches the session and its VAD (high: 100 ms after a tool
    call; low: no eager end), and session.updated says semantic_vad back."""
    from assistant.server.realtime.server_vad import vad_overrides

    state = SessionState(model="voxtral")
    for eagerness, eager_ms in (("high", 100), ("auto", 250), ("low", None)):
        vad = {"type": "semantic_vad", "eagerness": eagerness, "interrupt_response": False}
        after = state.apply(_session({"audio": {"input": {"turn_detection": vad}}}).session)
        assert vad_overrides(after.turn_detection) == {"eager_silence_ms": eager_ms}
        wire = after.to_wire("sess_1", {"silence_duration_ms": 500})["audio"]["input"]
        assert wire["turn_detection"] == {
            "type": "semantic_vad",
            "eagerness": eagerness,
            "create_response": True,
            "interrupt_response": False,
        }
    # Back to server_vad: no eager end is left over.
    server = after.apply(
        _session({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}}).session
    )
    assert vad_overrides(server.turn_detection) == {}
    assert server.to_wire("sess_1", {})["audio"]["input"]["turn_detection"]["type"] == "server_vad"


def test_unsupported_input_rate_is_refused() -> None:
    """audio/pcm at 44.1 kHz is refused (16 and 24 kHz are accepted)."""
    frame = {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}
    error = _error(json.dumps({"type": "session.update", "session": frame}))
    assert error.code == "invalid_value"


def test_fields_the_server_does_not_use_are_ignored() -> None:
    """Output voice and other unused options do not make a session.update fail."""
    update = _session({"type": "realtime", "audio": {"output": {"voice": "marin"}}, "x": 1})
    assert update.session.audio is not None


def test_base64_garbage_is_invalid_audio() -> None:
    """Audio that is not base64 is refused as invalid_audio."""
    with pytest.raises(ProtocolError) as caught:
        decode_pcm16("not base64!!", event_id="e3")
    assert (caught.value.code, caught.value.event_id) == ("invalid_audio", "e3")


def test_odd_length_pcm_is_invalid_audio() -> None:
    """PCM16 with an odd number of bytes is refused."""
    with pytest.raises(ProtocolError) as caught:
        decode_pcm16(base64.b64encode(b"\x01\x02\x03").decode())
    assert "even number of bytes" in caught.value.message


def test_pcm16_decodes_little_endian() -> None:
    """Base64 PCM16 decodes to the int16 samples it encodes."""
    samples = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    decoded = decode_pcm16(base64.b64encode(samples.tobytes()).decode())
    assert decoded.dtype == np.int16
    assert decoded.tolist() == samples.tolist()


def test_error_event_carries_the_client_event_id() -> None:
    """The error server event names the code, message, param and the client's event_id."""
    event = error_event(ProtocolError("invalid_audio", "bad", event_id="c1", param="audio"))
    assert event["type"] == "error"
    assert event["event_id"] != "c1"
    assert event["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_audio",
        "message": "bad",
        "param": "audio",
        "event_id": "c1",
    }


def test_session_update_changes_only_the_fields_present() -> None:
    """Absent fields keep their values; present ones change."""
    state = SessionState(model="voxtral", instructions="Be brief.")
    after = state.apply(_session({"audio": {"input": {"format": {"rate": 16000}}}}).session)
    assert after.instructions == "Be brief."
    assert after.input_rate_hz == 16000
    assert after.turn_detection == state.turn_detection


def test_null_turn_detection_means_manual_commits() -> None:
    """turn_detection: null switches server VAD off."""
    state = SessionState(model="voxtral")
    after = state.apply(_session({"audio": {"input": {"turn_detection": None}}}).session)
    assert after.turn_detection is None


def test_server_vad_settings_are_kept() -> None:
    """server_vad parameters from the client reach the session state."""
    vad = {"type": "server_vad", "silence_duration_ms": 700, "create_response": False}
    after = SessionState(model="voxtral").apply(
        _session({"audio": {"input": {"turn_detection": vad}}}).session
    )
    assert after.turn_detection is not None
    assert after.turn_detection.silence_duration_ms == 700
    assert after.turn_detection.create_response is False


def test_session_wire_shape_lists_tools_and_format() -> None:
    """session.updated carries the client tools and the input format."""
    tool = {"type": "function", "name": "get_time", "description": "Time.", "parameters": {}}
    state = SessionState(model="voxtral").apply(_session({"tools": [tool]}).session)
    wire = state.to_wire("sess_1", {"silence_duration_ms": 500})
    assert wire["tools"][0]["name"] == "get_time"
    assert wire["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert wire["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
