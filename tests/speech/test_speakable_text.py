"""What reaches a voice: characters no voice can say become spaces; the rest is untouched."""

from __future__ import annotations

import pytest

from assistant.speech.synthesis import EspeakSynthesizer, speakable_text


def test_ordinary_text_is_left_as_it_is() -> None:
    """Letters of any script, accents, punctuation and emoji pass unchanged."""
    text = "Café à 7 h — ¿listo? 日本語 👍"
    assert speakable_text(text) == text


def test_control_characters_and_lone_surrogates_become_spaces() -> None:
    """NUL, ESC, newline, a lone surrogate and a private-use character become spaces."""
    assert speakable_text("a\x00b\x1bc\nd\ud800e\ue000f") == "a b c d e f"


@pytest.mark.parametrize("text", ["Hello\x00 world.", "x\ud800y", "\x00"])
def test_espeak_speaks_text_with_unspeakable_characters(text: str) -> None:
    """espeak-ng is not handed a NUL or a lone surrogate (which would fail the sentence)."""
    pcm = EspeakSynthesizer().synthesize(text)
    assert pcm.dtype.name == "int16" and len(pcm) > 0
