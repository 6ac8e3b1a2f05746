"""describe -> info, as Home Assistant asks for it when a Wyoming service is added."""

from __future__ import annotations

import asyncio

from assistant.config import VOXTRAL_LANGUAGES
from tests.server.wire import Gate
from tests.server.wyoming import ha


async def test_info_offers_speech_to_text_conversation_and_speech(wyoming) -> None:
    """One server fills asr, handle and tts, each installed, with the model and languages."""
    info = await ha.describe("127.0.0.1", wyoming.port)
    (asr,), (handle,), (tts,) = info.asr, info.handle, info.tts
    assert asr.installed and handle.installed and tts.installed
    assert asr.models[0].name == "tiny-voxtral" and asr.models[0].installed
    assert asr.models[0].languages == list(VOXTRAL_LANGUAGES)
    assert handle.models[0].languages == list(VOXTRAL_LANGUAGES)
    assert [(v.name, v.languages) for v in tts.voices] == [("en-us", ["en"])]
    assert tts.supports_synthesize_streaming


async def test_info_says_honestly_who_finds_the_end_of_speech(start_wyoming) -> None:
    """requires_external_vad is false only while the server detects the end of speech itself."""
    async with start_wyoming() as detecting, start_wyoming(detect_end_of_speech=False) as plain:
        assert not (await ha.describe("127.0.0.1", detecting.port)).asr[0].requires_external_vad
        assert (await ha.describe("127.0.0.1", plain.port)).asr[0].requires_external_vad


async def test_home_control_is_advertised_with_tools_only(start_wyoming) -> None:
    """supports_home_control follows whether the agent has tools to act with."""
    from assistant.tools import ToolRegistry

    async with start_wyoming() as with_tools, start_wyoming(tools=ToolRegistry()) as without:
        assert (await ha.describe("127.0.0.1", with_tools.port)).handle[0].supports_home_control
        assert not (await ha.describe("127.0.0.1", without.port)).handle[0].supports_home_control


async def test_describe_is_answered_while_a_turn_holds_the_model(
    start_wyoming, script, gate: Gate
) -> None:
    """Info never waits for the model: a describe is answered while a turn is stuck in a tool."""
    async with start_wyoming(tools=gate.registry()) as server:
        script.say(None, [{"name": "slow_thing", "arguments": {}}])
        script.say("Done.")
        turn = asyncio.create_task(ha.converse("127.0.0.1", server.port, "hold on", "c-1"))
        await asyncio.wait_for(gate.started.wait(), ha.WAIT_S)
        info = await ha.describe("127.0.0.1", server.port)
        assert info.asr and not turn.done()
        gate.release.set()
        answer = await turn
    assert answer.type == "handled" and answer.data["text"] == "Done."
