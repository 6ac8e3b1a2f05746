"""cut_reply: a client that played the reply itself says later how much of it was heard."""

from __future__ import annotations

import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage, UserMessage

from assistant.conversation.dialogue import Dialogue
from assistant.events import TextDelta
from tests.dialogue.house import turn

REPLY = "The kitchen light is on now. The oven is still warm. Dinner is at seven."
LIGHT_ON = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}}


async def test_an_ended_reply_is_cut_to_the_words_heard(scripted) -> None:
    """After the response ended, cut_reply leaves only the heard prefix in the history."""
    worker, script = scripted
    script.say(REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="dinner?")
    await turn(dialogue)
    assert dialogue.cut_reply("The kitchen light is on now.")
    assert dialogue.history[-1].content == "The kitchen light is on now."


async def test_a_second_cut_shortens_again_but_never_grows_the_text(scripted) -> None:
    """Cuts can repeat: a shorter one shortens, a longer one leaves the shorter text."""
    worker, script = scripted
    script.say(REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="dinner?")
    await turn(dialogue)
    dialogue.cut_reply("The kitchen light is on now. The oven")
    dialogue.cut_reply("The kitchen light")
    assert dialogue.history[-1].content == "The kitchen light"
    dialogue.cut_reply(REPLY)
    assert dialogue.history[-1].content == "The kitchen light"


async def test_a_reply_stopped_by_a_cancel_is_cut_further(scripted) -> None:
    """A response stopped with what was sent is cut again to what was played."""
    worker, script = scripted
    script.say(REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="dinner?")
    sent = ""
    async for event in dialogue.respond():
        if isinstance(event, TextDelta):
            sent += event.text
            if len(sent) > 40 and dialogue.is_responding:
                dialogue.stop(sent)
    assert dialogue.cut_reply("The kitchen")
    assert dialogue.history[-1].content == "The kitchen"


async def test_a_cut_before_the_stopped_response_settles_applies_when_it_does(scripted) -> None:
    """cut_reply right after stop(), while the response winds down, cuts it as it settles."""
    worker, script = scripted
    script.say(REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="dinner?")
    events = []
    async for event in dialogue.respond():
        events.append(event)
        if isinstance(event, TextDelta) and len(events) == 3:
            dialogue.stop()
            assert dialogue.is_responding
            assert dialogue.cut_reply("The")
    assert dialogue.history[-1].content == "The"


async def test_a_cut_keeps_the_tool_calls_and_cuts_the_later_text(scripted, house) -> None:
    """Heard text that ends in the first round's text drops the later rounds' text only."""
    worker, script = scripted
    script.say("Switching it on. ", [LIGHT_ON])
    script.say("The light is on.")
    dialogue = Dialogue(worker, house.tools)
    dialogue.add_user_turn(text="light on")
    await turn(dialogue)
    assert dialogue.cut_reply("Switching")
    assert [type(m) for m in dialogue.history] == [UserMessage, AssistantMessage, ToolMessage]
    assert dialogue.history[1].content == "Switching"
    assert dialogue.history[1].tool_calls[0].function.name == "set_light"


async def test_a_cut_still_reaches_the_reply_after_newer_input(scripted) -> None:
    """The user spoke again (a barge-in), then the client's cut arrives: the reply is cut."""
    worker, script = scripted
    script.say(REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="dinner?")
    await turn(dialogue)
    dialogue.add_user_turn(text="wait")
    assert dialogue.cut_reply("The kitchen light is on now.")
    assert dialogue.history[1].content == "The kitchen light is on now."
    assert isinstance(dialogue.history[-1], UserMessage)


async def test_cutting_a_running_reply_that_nobody_stopped_is_refused(scripted) -> None:
    """cut_reply while the reply is still being written raises RuntimeError."""
    worker, script = scripted
    script.say(REPLY)
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="dinner?")
    async for event in dialogue.respond():
        if isinstance(event, TextDelta) and dialogue.is_responding:
            with pytest.raises(RuntimeError):
                dialogue.cut_reply("The")
            break


def test_nothing_to_cut_before_any_response(scripted) -> None:
    """Without a response yet, cut_reply says so and changes nothing."""
    worker, _ = scripted
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="hello")
    assert not dialogue.cut_reply("")
    assert [type(m) for m in dialogue.history] == [UserMessage]
