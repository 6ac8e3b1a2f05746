"""A spoken item's audio cut by a truncate: which words were heard (pure, no server)."""

from __future__ import annotations

import pytest

from assistant.server.realtime.audio_out import ItemSpeech, SpokenClip

RATE_HZ = 24000


def _item() -> ItemSpeech:
    """Two sentences of one second each, then a blank piece with no audio."""
    clips = [
        SpokenClip("The light is on.", RATE_HZ),
        SpokenClip(" one two three four", RATE_HZ),
        SpokenClip("\n", 0),
    ]
    return ItemSpeech("item_1", 0, "Earlier text. ", RATE_HZ, clips)


def test_audio_up_to_a_sentence_end_keeps_that_sentence() -> None:
    """1000 ms: the first sentence, whole."""
    assert _item().truncate(1000) == "The light is on."


def test_audio_half_way_through_a_sentence_keeps_half_its_words() -> None:
    """1500 ms: the first sentence and two of the four words of the second."""
    assert _item().truncate(1500) == "The light is on. one two"


def test_all_the_audio_keeps_all_the_text() -> None:
    """2000 ms, the whole audio: the whole transcript."""
    assert _item().truncate(2000) == "The light is on. one two three four\n"


def test_more_than_the_audio_is_refused() -> None:
    """audio_end_ms past the audio: ValueError saying how long the audio is."""
    with pytest.raises(ValueError, match="2000 ms"):
        _item().truncate(2500)


def test_a_second_truncate_cannot_go_past_the_first() -> None:
    """After a truncate at 1200 ms the item's audio is 1200 ms long."""
    item = _item()
    item.truncate(1200)
    assert item.duration_ms == 1200
    with pytest.raises(ValueError):
        item.truncate(1500)
