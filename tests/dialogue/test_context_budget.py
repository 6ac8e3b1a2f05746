"""The context budget on the tiny model: long conversations keep working, newest turns stay."""

from __future__ import annotations

from mistral_common.protocol.instruct.messages import AudioChunk, TextChunk

from assistant.config import GenerationParams
from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.events import ErrorEvent
from tests.dialogue.house import turn

BUDGET_TOKENS = 1600
"""Room for about three short clips (376 tokens each) and their replies."""


async def test_two_hundred_audio_turns_stay_within_the_budget(scripted, speech) -> None:
    """200 turns of short clips: every turn is answered, the prompt never exceeds the budget,
    and the newest turns are always the ones kept."""
    worker, script = scripted
    settings = DialogueSettings(context_budget_tokens=BUDGET_TOKENS, transcribe_user=False)
    dialogue = Dialogue(worker, settings=settings, params=GenerationParams(max_new_tokens=16))
    clip = speech("turn on the light")
    for n in range(200):
        script.say(f"Answer {n}.")
        dialogue.add_user_turn(audio=clip, text=f"question {n}")
        done = (await turn(dialogue))[-1]
        assert done.finish_reason == "stop" and done.text == f"Answer {n}."
        assert done.metrics.prompt_tokens <= BUDGET_TOKENS
        newest_user, newest_reply = dialogue.history[-2:]
        assert newest_user.content[-1] == TextChunk(text=f"question {n}")
        assert newest_reply.content == f"Answer {n}."
    assert dialogue.dropped_turns > 190
    kept = [m.content[-1].text for m in dialogue.history if m.role == "user"]
    assert kept == [f"question {n}" for n in range(200 - len(kept), 200)]


async def test_dropped_audio_is_kept_as_its_transcript(scripted, speech) -> None:
    """Over the budget, an old clip is replaced by its transcript before its turn is dropped."""
    worker, script = scripted
    settings = DialogueSettings(context_budget_tokens=600)
    dialogue = Dialogue(worker, settings=settings, params=GenerationParams(max_new_tokens=16))
    script.hear("turn on the kitchen light")
    dialogue.add_user_turn(audio=speech("turn on the kitchen light"))
    await turn(dialogue)
    script.hear("and the hall light")
    dialogue.add_user_turn(audio=speech("and the hall light"))
    await turn(dialogue)
    first, second = (m for m in dialogue.history if m.role == "user")
    assert first.content == [TextChunk(text="turn on the kitchen light")]
    assert isinstance(second.content[0], AudioChunk)
    assert dialogue.dropped_turns == 0
    assert "turn on the kitchen light" in script.prompts[-1]


async def test_a_turn_over_the_budget_is_removed_and_the_next_one_works(scripted) -> None:
    """Input that alone is over the budget fails with context_overflow and leaves the history:
    the next turn is answered, and the earlier turns are still in its prompt."""
    worker, script = scripted
    settings = DialogueSettings(context_budget_tokens=600, transcribe_user=False)
    dialogue = Dialogue(worker, settings=settings, params=GenerationParams(max_new_tokens=16))
    script.say("Noted, Bob.")
    dialogue.add_user_turn(text="My name is Bob.")
    await turn(dialogue)
    dialogue.add_user_turn(text="word " * 2000)
    events = await turn(dialogue)
    (error,) = [e for e in events if isinstance(e, ErrorEvent)]
    assert error.code == "context_overflow" and "removed" in error.message
    assert events[-1].finish_reason == "error"
    script.say("Your name is Bob.")
    dialogue.add_user_turn(text="What is my name?")
    assert (await turn(dialogue))[-1].text == "Your name is Bob."
    assert "My name is Bob." in script.prompts[-1] and "word word" not in script.prompts[-1]
    assert len(script.prompts) == 2  # the oversize turn never reached the model
