"""The pure history rules: merging, one result per call, delivered text, the context budget."""

from __future__ import annotations

import numpy as np
import pytest
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    AudioChunk,
    TextChunk,
    ToolMessage,
)

from assistant.audio.io import audio_chunk
from assistant.conversation.history import (
    History,
    Round,
    UserItem,
    cancelled_result,
    delivered_rounds,
    reply_messages,
)
from assistant.events import ToolCall, ToolResult

CALL = ToolCall("aaaaaaaa1", "set_light", {"room": "hall"})
OTHER = ToolCall("bbbbbbbb2", "set_light", {"room": "attic"})


def text_item(item_id: str, text: str) -> UserItem:
    return UserItem(item_id, (TextChunk(text=text),))


def audio_item(item_id: str, transcript: str | None = None) -> UserItem:
    clip = audio_chunk(np.zeros(1600, dtype=np.float32))
    return UserItem(item_id, (clip,), audio_s=0.1, transcript=transcript)


def ok(call: ToolCall) -> ToolResult:
    return ToolResult(call.id, call.name, '{"ok": true}')


def test_user_input_without_a_reply_joins_the_same_message() -> None:
    """Two inputs in a row are one user message; after a reply a new one starts."""
    history = History()
    history.add_user(text_item("a", "one"))
    history.add_user(text_item("b", "two"))
    assert len(history.messages) == 1
    history.add_replies([AssistantMessage(content="ok")])
    history.add_user(text_item("c", "three"))
    assert [m.role for m in history.messages] == ["user", "assistant", "user"]


def test_an_empty_item_is_refused() -> None:
    """A user item must carry audio or text."""
    with pytest.raises(ValueError, match="audio or text"):
        History().add_user(UserItem("a", ()))


def test_replies_with_an_unanswered_call_are_refused() -> None:
    """Committing a tool call without its result raises and leaves the history unchanged."""
    history = History()
    history.add_user(text_item("a", "hi"))
    calls = reply_messages([Round(calls=[CALL], results={CALL.id: ok(CALL)})])[:1]
    with pytest.raises(ValueError, match="no result"):
        history.add_replies(calls)
    assert len(history.messages) == 1


def test_a_result_for_no_open_call_is_refused() -> None:
    """A tool message must answer a call of the assistant message before it."""
    history = History()
    history.add_user(text_item("a", "hi"))
    stray = ToolMessage(content="{}", tool_call_id=CALL.id, name=CALL.name)
    with pytest.raises(ValueError, match="answers no open call"):
        history.add_replies([stray])


def test_missing_results_are_recorded_as_cancelled() -> None:
    """Every call gets exactly one result, in call order; absent ones say cancelled."""
    messages = reply_messages(
        [Round(calls=[CALL, OTHER], results={OTHER.id: ok(OTHER)})], reason="interrupted"
    )
    assistant, first, second = messages
    assert [c.id for c in assistant.tool_calls] == [CALL.id, OTHER.id]
    assert (first.tool_call_id, second.tool_call_id) == (CALL.id, OTHER.id)
    assert '"cancelled"' in first.content and "interrupted" in first.content
    assert second.content == '{"ok": true}'


def test_cancelled_result_is_a_failed_json_result() -> None:
    """A cancelled result is ok=False with a JSON error the model can read."""
    result = cancelled_result(CALL, "the user did not confirm")
    assert not result.ok and result.call_id == CALL.id
    assert result.content == '{"error": "cancelled", "reason": "the user did not confirm"}'


def test_an_empty_round_leaves_no_message() -> None:
    """A reply with neither text nor calls adds nothing (mistral-common refuses it)."""
    assert reply_messages([Round(), Round(text="hi")]) == [AssistantMessage(content="hi")]


def test_delivered_text_cuts_across_rounds_and_keeps_calls() -> None:
    """The delivered prefix is shared out over the rounds in order; calls stay."""
    rounds = [
        Round(text="Let me check. ", calls=[CALL], results={CALL.id: ok(CALL)}),
        Round(text="It is on."),
    ]
    cut = delivered_rounds(rounds, "Let me check. It")
    assert [r.text for r in cut] == ["Let me check. ", "It"]
    assert cut[0].calls == [CALL]
    early = delivered_rounds(rounds, "Let")
    assert [r.text for r in early] == ["Let", ""]
    assert delivered_rounds(rounds, None) == rounds


def test_fit_replaces_old_audio_by_transcripts_first() -> None:
    """Over budget, older clips with a transcript become text before any turn is dropped."""
    history = History()
    history.add_user(audio_item("a", transcript="turn on the light"))
    history.add_replies([AssistantMessage(content="done")])
    history.add_user(audio_item("b"))

    def audio_clips(messages) -> int:
        return sum(isinstance(c, AudioChunk) for m in messages for c in m.content or [])

    assert history.fit(audio_clips, 1)
    first = history.messages[0]
    assert first.content == [TextChunk(text="turn on the light")]
    assert history.dropped_turns == 0


def test_fit_drops_the_oldest_turns_and_keeps_the_newest() -> None:
    """Whole turns go oldest first; the newest turn is never dropped."""
    history = History()
    for n in range(5):
        history.add_user(text_item(f"i{n}", f"question {n}"))
        history.add_replies([AssistantMessage(content=f"answer {n}")])
    history.add_user(text_item("last", "newest"))
    assert history.fit(len, 3)
    assert [m.role for m in history.messages] == ["user", "assistant", "user"]
    assert history.messages[-1].content == [TextChunk(text="newest")]
    assert history.dropped_turns == 4


def test_fit_fails_when_the_newest_turn_alone_is_too_big() -> None:
    """If even the newest turn is over the limit, fit says so and changes nothing: dropping
    the older turns or their audio could not have helped."""
    history = History()
    history.add_user(audio_item("a", transcript="old"))
    history.add_replies([AssistantMessage(content="reply")])
    history.add_user(text_item("b", "new"))
    assert not history.fit(len, 0)
    assert len(history.messages) == 3 and history.dropped_turns == 0
    assert history.item("a") is not None and not history.item("a").audio_dropped


def test_unanswered_items_can_be_removed() -> None:
    """Items of the unanswered newest turn can be taken out (the turn too, once empty); an
    answered turn is left alone."""
    history = History()
    history.add_user(text_item("a", "old"))
    history.add_replies([AssistantMessage(content="reply")])
    assert not history.remove_unanswered({"a"})
    history.add_user(text_item("b", "kept"))
    history.add_user(text_item("c", "too long"))
    assert history.remove_unanswered({"c"})
    assert history.messages[-1].content == [TextChunk(text="kept")]
    assert history.remove_unanswered({"b"})
    assert [m.role for m in history.messages] == ["user", "assistant"]


def test_fit_without_transcripts_drops_audio_turns_whole() -> None:
    """With keep_transcripts off, an old audio turn is dropped, not turned into text."""
    history = History()
    history.add_user(audio_item("a", transcript="hello"))
    history.add_replies([AssistantMessage(content="hi")])
    history.add_user(text_item("b", "next"))
    assert history.fit(len, 1, keep_transcripts=False)
    assert history.item("a") is None and history.dropped_turns == 1
