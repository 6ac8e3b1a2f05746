"""The conversation agent: Home Assistant's transcript -> handled sequence, turn after turn."""

from __future__ import annotations

import asyncio

from wyoming.asr import Transcript
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

from assistant.server.wyoming.conversations import ConversationStore
from tests.server.wyoming import ha

HOST = "127.0.0.1"


async def test_a_turn_is_handled_with_the_tools(wyoming, script) -> None:
    """The model calls get_weather, reads its result and answers: handled with that text."""
    script.say(None, [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say("It is 21 degrees and clear in Paris.")
    answer = await ha.converse(HOST, wyoming.port, "What is the weather in Paris?", "01JCONV")
    assert answer.type == "handled"
    assert answer.data["text"] == "It is 21 degrees and clear in Paris."
    assert answer.data["context"] == {"conversation_id": "01JCONV"}
    assert '"temperature_c": 21' in script.prompts[1]


async def test_the_same_conversation_id_continues_the_conversation(wyoming, script) -> None:
    """A second connection with the same id: the model sees the first exchange."""
    script.say("Hello Ada.")
    script.say("Your name is Ada.")
    await ha.converse(HOST, wyoming.port, "My name is Ada.", "01JSAME")
    answer = await ha.converse(HOST, wyoming.port, "What is my name?", "01JSAME")
    assert answer.data["text"] == "Your name is Ada."
    assert "My name is Ada." in script.prompts[1] and "Hello Ada." in script.prompts[1]


async def test_another_conversation_id_starts_afresh(wyoming, script) -> None:
    """A different id is a different conversation: nothing of the first one leaks into it."""
    script.say("Hello Ada.")
    script.say("I do not know your name.")
    await ha.converse(HOST, wyoming.port, "My name is Ada.", "01JFIRST")
    await ha.converse(HOST, wyoming.port, "What is my name?", "01JOTHER")
    assert "Ada" not in script.prompts[1]


async def test_conversations_are_bounded(start_wyoming, script) -> None:
    """Beyond max_conversations the least recently used one is forgotten."""
    async with start_wyoming(max_conversations=2) as server:
        for conversation in ("a", "b", "c"):
            script.say(f"Noted {conversation}.")
            await ha.converse(HOST, server.port, f"Remember {conversation}.", conversation)
        assert len(server.service.conversations) == 2
        script.say("Fresh start.")
        await ha.converse(HOST, server.port, "What did I say?", "a")
    assert "Remember a." not in script.prompts[-1]


async def test_a_failed_turn_is_not_handled(start_wyoming, script) -> None:
    """A turn the model cannot answer (over the context budget) is not-handled, with why."""
    async with start_wyoming() as server:
        server.service.dialogue_settings.context_budget_tokens = 5
        answer = await ha.converse(HOST, server.port, "Tell me a long story.", "01JFAIL")
    assert answer.type == "not-handled"
    assert "Sorry" in answer.data["text"]


async def test_an_empty_text_gets_an_error(wyoming) -> None:
    """A transcript without words is refused with an error event."""
    async with AsyncTcpClient(HOST, wyoming.port) as client:
        await client.write_event(Transcript(text="   ").event())
        event = await asyncio.wait_for(client.read_event(), ha.WAIT_S)
    assert event is not None and Error.from_event(event).code == "empty_text"


def test_the_store_forgets_idle_conversations() -> None:
    """A conversation unused for idle_s is handed back for closing; a busy one never is."""
    store: ConversationStore[str] = ConversationStore(max_conversations=4, idle_s=300.0)
    store.get("kitchen", lambda: "dialogue-1", now_s=0.0)
    busy, _ = store.get("hall", lambda: "dialogue-2", now_s=0.0)

    async def hold() -> None:
        async with busy.lock:
            gone = store.expired(now_s=400.0)
            assert [c.key for c in gone] == ["kitchen"]
            assert "hall" in store

    asyncio.run(hold())
    fresh, gone = store.get("kitchen", lambda: "dialogue-3", now_s=401.0)
    assert fresh.dialogue == "dialogue-3"
    assert [c.key for c in gone] == ["hall"]  # idle and no longer busy
    assert [c.key for c in store.expired(now_s=600.0)] == []
    assert [c.key for c in store.expired(now_s=701.0)] == ["kitchen"]
