"""Announcements (a timer fired) join the history as assistant messages the model can refer to."""

from __future__ import annotations

import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage

from assistant.conversation.dialogue import Dialogue
from assistant.events import Announcement, TextDelta
from tests.dialogue.house import turn

TEA = Announcement("Your tea timer is done.", "set_timer")


@pytest.mark.parametrize("version", ["v7", "v13"])
async def test_an_announcement_reaches_the_next_prompt(scripted_workers, version) -> None:
    """After an answered turn the announcement is an assistant message in the next request."""
    worker, script = scripted_workers(version)
    script.say("Timer set.")
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="set a tea timer")
    await turn(dialogue)
    dialogue.add_announcement(TEA)
    assert dialogue.history[-1] == AssistantMessage(content=TEA.text)
    script.say("Your tea timer went off.")
    dialogue.add_user_turn(text="what was that?")
    await turn(dialogue)
    prompt = script.prompts[-1]
    assert prompt.index("Timer set.") < prompt.index(TEA.text) < prompt.index("what was that?")


async def test_an_announcement_during_a_reply_follows_it(scripted) -> None:
    """An announcement made while a reply streams joins the history right after that reply."""
    worker, script = scripted
    script.say("Here is a long answer about the weather in the kitchen.")
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="weather?")
    announced = False
    async for event in dialogue.respond():
        if isinstance(event, TextDelta) and not announced:
            dialogue.add_announcement(TEA)
            announced = True
            assert len(dialogue.history) == 1
    user, reply, announcement = dialogue.history
    assert isinstance(user, UserMessage) and reply.content.startswith("Here is")
    assert announcement == AssistantMessage(content=TEA.text)


async def test_an_announcement_never_answers_waiting_input(scripted) -> None:
    """Input that waits for its reply keeps waiting: the announcement comes after the reply."""
    worker, script = scripted
    script.say("It is noon.")
    dialogue = Dialogue(worker)
    dialogue.add_user_turn(text="what time is it")
    dialogue.add_announcement("Your tea timer is done.")
    assert len(dialogue.history) == 1
    await turn(dialogue)
    assert [m.content for m in dialogue.history[1:]] == ["It is noon.", TEA.text]


async def test_an_announcement_before_any_turn_waits_for_the_first_reply(scripted) -> None:
    """An empty conversation cannot start with the assistant: the announcement waits."""
    worker, _ = scripted
    dialogue = Dialogue(worker)
    dialogue.add_announcement(TEA)
    assert dialogue.history == []
    dialogue.add_user_turn(text="hi")
    await turn(dialogue)
    assert dialogue.history[-1] == AssistantMessage(content=TEA.text)


async def test_an_empty_announcement_is_refused(scripted) -> None:
    """Blank text is a caller's mistake, reported as such."""
    worker, _ = scripted
    with pytest.raises(ValueError, match="text"):
        Dialogue(worker).add_announcement("  ")
