"""make_synthesizer: the speech settings to a Synthesizer; engines, voices, languages."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest

from assistant.config import ConfigError, SpeechSettings, load_settings
from assistant.speech.errors import SpeechError
from assistant.speech.synthesis import (
    EspeakSynthesizer,
    LanguageFollowingSynthesizer,
    make_synthesizer,
    register_engine,
    speech_problem,
)


@dataclass
class Recorder:
    """An engine that records which voice said what (one second of silence each time)."""

    said: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, voice: str, words_per_minute: int) -> Recorder.Voice:
        return Recorder.Voice(self, voice)

    @dataclass
    class Voice:
        engine: Recorder
        voice: str
        sample_rate_hz: int = 16000

        def synthesize(self, text: str) -> np.ndarray:
            self.engine.said.append((self.voice, text))
            return np.zeros(16000, dtype=np.int16)


@pytest.fixture
def recorder() -> tuple[SpeechSettings, Recorder]:
    """Settings whose engine is a fresh Recorder."""
    engine = Recorder()
    name = f"recorder-{uuid.uuid4().hex[:8]}"
    register_engine(name, engine)
    return SpeechSettings(engine=name), engine


def test_espeak_is_the_default_engine_and_a_fixed_voice_is_kept() -> None:
    """speech.voice fixes the voice: an espeak-ng synthesizer of that voice and rate."""
    synthesizer = make_synthesizer(SpeechSettings(voice="fr-fr", words_per_minute=150))
    assert isinstance(synthesizer, EspeakSynthesizer)
    assert (synthesizer.voice, synthesizer.words_per_minute) == ("fr-fr", 150)


def test_a_language_picks_its_voice(recorder) -> None:
    """make_synthesizer(settings, "es") speaks with speech.language_voices["es"]."""
    settings, engine = recorder
    make_synthesizer(settings, "es").synthesize("Hola.")
    assert engine.said == [("es", "Hola.")]


def test_without_a_voice_the_synthesizer_follows_each_sentence_language(recorder) -> None:
    """No speech.voice: French sentences in fr-fr, English ones in en-us, short ones in the
    language spoken before them."""
    settings, engine = recorder
    synthesizer = make_synthesizer(settings)
    assert isinstance(synthesizer, LanguageFollowingSynthesizer)
    for text in ["Bonjour, comment puis-je vous aider aujourd'hui ?", "Oui.", "The light is on."]:
        synthesizer.synthesize(text)
    assert [voice for voice, _ in engine.said] == ["fr-fr", "fr-fr", "en-us"]


def test_a_preferred_language_speaks_until_a_sentence_says_otherwise(recorder) -> None:
    """prefer("de") (the user spoke German): a short sentence is said in German."""
    settings, engine = recorder
    synthesizer = make_synthesizer(settings)
    assert isinstance(synthesizer, LanguageFollowingSynthesizer)
    synthesizer.prefer("de")
    synthesizer.synthesize("OK.")
    synthesizer.prefer("xx")  # no voice for it: ignored
    synthesizer.synthesize("Ja.")
    assert [voice for voice, _ in engine.said] == ["de", "de"]


def test_an_unknown_engine_is_a_speech_error_naming_the_registered_ones() -> None:
    """speech.engine that nobody registered: SpeechError listing the engines there are."""
    with pytest.raises(SpeechError, match="espeak-ng"):
        make_synthesizer(SpeechSettings(engine="no-such-engine"))


def test_speech_problem_names_a_voice_that_does_not_exist() -> None:
    """A language voice espeak-ng does not have is found when the settings are tried."""
    problem = speech_problem(SpeechSettings(language_voices={"fr": "xx-nope"}))
    assert problem is not None and "xx-nope" in problem


def test_the_default_settings_can_speak() -> None:
    """Every default language voice exists in espeak-ng (and the language model loads)."""
    assert speech_problem(SpeechSettings()) is None


def test_language_voices_given_replace_only_their_languages() -> None:
    """--set speech.language_voices={fr: fr-be} keeps the other languages' voices."""
    settings = load_settings({"speech": {"language_voices": {"fr": "fr-be"}}}).speech
    assert (settings.language_voices["fr"], settings.language_voices["en"]) == ("fr-be", "en-us")


def test_language_voices_from_the_environment(monkeypatch) -> None:
    """VOXTRAL_ASSISTANT_SPEECH__LANGUAGE_VOICES=fr:fr-be,pt:pt-br sets two languages."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_SPEECH__LANGUAGE_VOICES", "fr:fr-be,pt:pt-br")
    voices = load_settings().speech.language_voices
    assert (voices["fr"], voices["pt"], voices["de"]) == ("fr-be", "pt-br", "de")


def test_a_default_language_without_a_voice_is_refused() -> None:
    """speech.default_language must be one of the languages that have a voice."""
    with pytest.raises(ConfigError, match="default_language"):
        load_settings({"speech": {"default_language": "ja"}})


def test_a_language_code_that_is_not_iso_639_1_is_refused() -> None:
    """language_voices keys are two small letters."""
    with pytest.raises(ConfigError, match="ISO-639-1"):
        load_settings({"speech": {"language_voices": {"French": "fr-fr"}}})
