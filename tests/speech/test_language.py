"""The language of a sentence, among the languages a voice is configured for."""

from __future__ import annotations

import pytest

from assistant.config import DEFAULT_LANGUAGE_VOICES
from assistant.speech.language import LanguageGuesser

VOXTRAL = LanguageGuesser(DEFAULT_LANGUAGE_VOICES)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("It is 21 degrees and clear in Paris today.", "en"),
        ("La lumière de la cuisine est allumée.", "fr"),
        ("Hola, ¿en qué puedo ayudarte hoy?", "es"),
        ("Das Licht in der Küche ist an.", "de"),
        ("Het is vandaag mooi weer in Amsterdam.", "nl"),
        ("आज मौसम अच्छा है।", "hi"),
    ],
)
def test_a_full_sentence_is_recognized(text: str, language: str) -> None:
    """A sentence in one of Voxtral's languages is guessed right."""
    assert VOXTRAL.guess(text) == language


@pytest.mark.parametrize("text", ["OK.", "Paris.", "42", "…"])
def test_a_sentence_too_short_to_tell_gives_no_answer(text: str) -> None:
    """One word or no letters: no guess (the caller keeps the language it had)."""
    assert VOXTRAL.guess(text) is None


def test_only_the_candidate_languages_are_answered() -> None:
    """Italian text among English and French candidates is not called Italian."""
    guesser = LanguageGuesser(["en", "fr"])
    assert guesser.guess("Oggi il tempo è bello e fa caldo a Roma.") in ("en", "fr", None)


def test_a_single_candidate_is_always_the_answer() -> None:
    """With one language configured there is nothing to guess."""
    assert LanguageGuesser(["de"]).guess("OK.") == "de"
