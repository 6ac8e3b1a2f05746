"""Property, on the tiny model: random interleavings of inputs, replies, tool calls, failures,
confirmations, announcements, interruptions (during a reply or after it ended) and cancellations
never break the history or repeat a tool run."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import TextDelta
from assistant.model.prompting import place_instructions
from tests.dialogue.house import House

CALLS = {
    "light": {"name": "set_light", "arguments": {"room": "hall", "state": "on"}},
    "broken": {"name": "read_thermostat", "arguments": {}},
    "confirm": {"name": "unlock_door", "arguments": {"door": "back"}},
    "unknown": {"name": "open_portal", "arguments": {}},
    "bad arguments": {"name": "set_light", "arguments": {"room": 3}},
}

reply_round = st.lists(st.sampled_from(sorted(CALLS)), min_size=1, max_size=3)
step = st.fixed_dictionaries(
    {
        "input": st.sampled_from(["text", "audio", "yes", "no"]),
        "rounds": st.lists(st.tuples(st.sampled_from(["", "On it. "]), reply_round), max_size=2),
        "final": st.sampled_from(["Done.", "All set, the lights are on now."]),
        "announce": st.none() | st.integers(min_value=0, max_value=6),
        "stop": st.none()
        | st.tuples(
            st.sampled_from(["interrupt", "leave", "late"]),
            st.integers(min_value=1, max_value=25),
            st.none() | st.integers(min_value=0, max_value=12),
        ),
    }
)


def check(dialogue: Dialogue, house: House, tokenizer) -> None:
    """Encodable history, one result per call, no handler run twice, no run reported cancelled."""
    assert not dialogue.is_responding
    messages = dialogue.history
    if not isinstance(messages[-1], (UserMessage, ToolMessage)):
        messages = [*messages, UserMessage(content="next")]
    placed = place_instructions([SystemMessage(content="Be brief."), *messages], "v7")
    tools = house.tools.mistral_tools()
    tokenizer.encode_chat_completion(ChatCompletionRequest(messages=placed, tools=tools))
    results: dict[str, int] = {}
    expected: list[str] = []
    for message in dialogue.history:
        if isinstance(message, AssistantMessage):
            assert not expected, f"calls {expected} have no result"
            expected = [c.id for c in message.tool_calls or ()]
        elif isinstance(message, ToolMessage):
            expected.remove(message.tool_call_id)
            results[message.tool_call_id] = results.get(message.tool_call_id, 0) + 1
            if message.tool_call_id in house.runs_per_call():
                assert '"cancelled"' not in message.content, (
                    "a tool that ran was reported cancelled"
                )
    assert not expected
    assert set(results.values()) <= {1}
    assert set(house.runs_per_call().values()) <= {1}


async def run_step(dialogue: Dialogue, script, plan, clip) -> None:
    script.reset()
    for text, names in plan["rounds"]:
        script.say(text or None, [CALLS[name] for name in names])
    script.say(plan["final"])
    if plan["input"] == "audio":
        dialogue.add_user_turn(audio=clip)
    else:
        dialogue.add_user_turn(text={"text": "lights please"}.get(plan["input"], plan["input"]))
    if plan["announce"] == 0:
        dialogue.add_announcement("Your tea timer is done.")
    stream = dialogue.respond()
    sent, seen = "", 0
    kind, at, cut = plan["stop"] or ("none", 0, None)
    async for event in stream:
        seen += 1
        if isinstance(event, TextDelta):
            sent += event.text
        if seen == plan["announce"]:
            dialogue.add_announcement("Your tea timer is done.")
        if seen == at and kind == "leave":
            break
        if seen == at and kind == "interrupt":
            await dialogue.interrupt(delivered_text=None if cut is None else sent[:cut])
    await stream.aclose()
    if kind == "late":
        await dialogue.interrupt(delivered_text=None if cut is None else sent[:cut])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(step, min_size=1, max_size=6))
def test_random_conversations_keep_the_history_valid(scripted_workers, speech, plans) -> None:
    """After every step the history encodes, calls pair with one result, no tool ran twice."""
    worker, script = scripted_workers("v7")
    clip = speech("lights")

    async def converse() -> None:
        house = House()
        dialogue = Dialogue(worker, house.tools, DialogueSettings(instructions="Be brief."))
        try:
            for plan in plans:
                await run_step(dialogue, script, plan, clip)
                check(dialogue, house, worker.tokenizer)
        finally:
            await dialogue.aclose()
            await house.tools.aclose()

    asyncio.run(converse())
