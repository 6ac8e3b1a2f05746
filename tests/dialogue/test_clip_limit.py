"""The per-request clip limit (vLLM takes 5 clips per Voxtral request): history rules, dialogue."""

from __future__ import annotations

import numpy as np
from mistral_common.protocol.instruct.messages import AssistantMessage, AudioChunk, TextChunk

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.conversation.history import History, UserItem
from assistant.events import ErrorEvent
from tests.dialogue.house import turn


def _audio(item_id: str, transcript: str | None = None) -> UserItem:
    return UserItem(item_id, (audio_chunk(np.zeros(1600, dtype=np.float32)),), 0.1, transcript)


def _answered(history: History, *items: UserItem) -> None:
    for item in items:
        history.add_user(item)
    history.add_replies([AssistantMessage(content="ok")])


def test_over_the_limit_old_clips_become_their_transcripts() -> None:
    """Three clips, limit two: the oldest clip is replaced by its transcript, no turn dropped."""
    history = History()
    _answered(history, _audio("a", "first"))
    _answered(history, _audio("b", "second"))
    history.add_user(_audio("c"))
    assert history.fit(len, 10_000, max_clips=2)
    assert history.messages[0].content == [TextChunk(text="first")]
    assert history.clips() == 2 and history.dropped_turns == 0


def test_clips_without_transcripts_cost_their_whole_turns() -> None:
    """No transcripts known: the oldest turns are dropped until the clips fit."""
    history = History()
    _answered(history, _audio("a"))
    _answered(history, _audio("b"))
    history.add_user(_audio("c"))
    assert history.fit(len, 10_000, max_clips=1)
    assert history.dropped_turns == 2 and history.clips() == 1
    assert isinstance(history.messages[0].content[0], AudioChunk)


def test_a_newest_turn_over_the_limit_fails_and_changes_nothing() -> None:
    """The newest turn alone holds more clips than allowed: False, history untouched."""
    history = History()
    _answered(history, _audio("a", "old"))
    history.add_user(_audio("b"))
    history.add_user(_audio("c"))
    assert not history.fit(len, 10_000, max_clips=1)
    assert history.clips() == 3 and history.dropped_turns == 0


def test_without_a_limit_any_number_of_clips_fits() -> None:
    """max_clips None (the local backend): clips alone never shrink the history."""
    history = History()
    for n in range(7):
        _answered(history, _audio(f"i{n}"))
    history.add_user(_audio("last"))
    assert history.fit(len, 10_000)
    assert history.clips() == 8


async def test_seven_spoken_turns_send_at_most_five_clips(scripted, speech, monkeypatch) -> None:
    """A backend that takes 5 clips: every prompt holds at most 5, the older ones as text."""
    worker, script = scripted
    monkeypatch.setattr(worker, "max_clips", 5)
    dialogue = Dialogue(worker, params=GenerationParams(max_new_tokens=8))
    clip = speech("turn on the light")
    for n in range(7):
        script.hear(f"words {n}")
        script.say(f"Answer {n}.")
        dialogue.add_user_turn(audio=clip)
        assert (await turn(dialogue))[-1].text == f"Answer {n}."
        assert script.prompts[-1].count("[BEGIN_AUDIO]") == min(n + 1, 5)
    assert "words 0" in script.prompts[-1] and "words 1" in script.prompts[-1]
    assert dialogue.dropped_turns == 0


async def test_a_turn_with_too_many_clips_is_refused_and_removed(
    scripted, speech, monkeypatch
) -> None:
    """Six clips in one turn, limit five: an error that says so; the next turn works."""
    worker, script = scripted
    monkeypatch.setattr(worker, "max_clips", 5)
    dialogue = Dialogue(worker, settings=DialogueSettings(transcribe_user=False))
    clip = speech("turn on the light")
    for _ in range(6):
        dialogue.add_user_turn(audio=clip)
    events = await turn(dialogue)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["context_overflow"]
    assert errors[0].message.startswith(
        "the input holds 6 audio clips and the model takes at most 5 per request, so it was "
        "removed from the conversation"
    )
    script.say("Fine.")
    dialogue.add_user_turn(audio=clip)
    assert (await turn(dialogue))[-1].text == "Fine."
