"""Wake words: the bundled models fire on synthesized wake phrases and not on other speech.

espeak-ng (voice en-us, 160 words per minute) says the phrases; the models were trained on
other voices, and these three fire on it (``hey_jarvis`` does not: it is offered but untested).
"""

from __future__ import annotations

import sys
import typing

import numpy as np
import pytest

from assistant.audio.wake import WAKE_WORDS, MicroWakeWordDetector, WakeWordUnavailable
from assistant.config import ListenSettings
from assistant.testing.speech import synthesize

PHRASES = {"okay_nabu": "okay nabu", "alexa": "alexa", "hey_mycroft": "hey mycroft"}
OTHER_SPEECH = (
    "What time is it in Tokyo?",
    "Okay, now turn on the kitchen lights, please.",
    "Alexander and Nadia went to the market on Monday.",
    "Hey, my cousin Croft is coming for dinner tomorrow.",
)


def _detections(detector: MicroWakeWordDetector, pcm: np.ndarray) -> int:
    """Detections over ``pcm`` fed in 20 ms frames, with silence around it."""
    audio = np.concatenate([np.zeros(8000, np.int16), pcm, np.zeros(16000, np.int16)])
    return sum(detector.process(audio[i : i + 320]) for i in range(0, len(audio) - 319, 320))


@pytest.mark.parametrize("name", sorted(PHRASES))
def test_each_wake_word_fires_on_its_phrase(name: str) -> None:
    """okay_nabu, alexa and hey_mycroft each fire once on their synthesized phrase."""
    assert _detections(MicroWakeWordDetector(name), synthesize(PHRASES[name])) == 1


@pytest.mark.parametrize("name", sorted(PHRASES))
def test_other_speech_does_not_wake_it(name: str) -> None:
    """Sentences with look-alike words (okay, Alexander, my ... Croft) fire none of them."""
    detector = MicroWakeWordDetector(name)
    assert sum(_detections(detector, synthesize(text)) for text in OTHER_SPEECH) == 0


def test_the_phrase_said_twice_fires_twice() -> None:
    """After a detection it starts afresh: the same phrase again is a new detection."""
    phrase = synthesize("alexa")
    pcm = np.concatenate([phrase, np.zeros(16000, np.int16), phrase])
    assert _detections(MicroWakeWordDetector("alexa"), pcm) == 2


def test_an_unknown_wake_word_is_refused() -> None:
    """A name that is not bundled fails with the list of names."""
    with pytest.raises(ValueError, match="okay_nabu"):
        MicroWakeWordDetector("hey_computer")


def test_the_settings_offer_exactly_the_bundled_wake_words() -> None:
    """``listen.wake_word``'s choices are the bundled models."""
    annotation = ListenSettings.model_fields["wake_word"].annotation
    (literal,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    assert set(typing.get_args(literal)) == set(WAKE_WORDS)


def test_on_macos_without_the_package_it_says_so_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No pymicro-wakeword wheel on macOS: one clear sentence naming the platform."""
    monkeypatch.setitem(sys.modules, "pymicro_wakeword", None)  # import fails
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(WakeWordUnavailable, match="not available on macOS") as caught:
        MicroWakeWordDetector("okay_nabu")
    assert "\n" not in str(caught.value)
