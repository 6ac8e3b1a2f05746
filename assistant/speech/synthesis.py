"""Text to PCM: the ``Synthesizer`` interface, the engines behind it, and the voice choice.

Every front-end speaks through ``Synthesizer`` (``listen``'s ``Speaker``, ``serve``'s audio
output, the Wyoming server's text-to-speech) and builds it with ``make_synthesizer`` from the
``speech.*`` settings. An engine is a factory ``(voice, words_per_minute) -> Synthesizer``
registered by name (``register_engine``, or by an installed package in the
``voxtral_assistant.speech_engines`` entry-point group); espeak-ng is built in. With no fixed
voice the synthesizer follows the language of what it says (``LanguageFollowingSynthesizer``).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import unicodedata
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from assistant.config import SpeechSettings
from assistant.speech.errors import SpeechError
from assistant.speech.language import LanguageGuesser

ENGINE_ENTRY_POINT_GROUP = "voxtral_assistant.speech_engines"
"""Installed packages offer engines here: the entry point's name is the engine's name, its
object a ``SynthesizerFactory``."""

ESPEAK_PACKAGES = "apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS)"


class Synthesizer(Protocol):
    """Text to mono int16 PCM; blocking (callers run it in a thread), one call at a time.

    ``sample_rate_hz`` is the rate of the PCM that the last ``synthesize`` returned. The text
    is whatever a model wrote or a client sent: an engine must cope with any string (control
    characters included, see ``speakable_text``) and raise only ``SpeechError``.
    """

    sample_rate_hz: int

    def synthesize(self, text: str) -> np.ndarray: ...


_UNSPEAKABLE_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})
"""Control characters, lone surrogates, private-use and unassigned code points."""


def speakable_text(text: str) -> str:
    """``text`` with what no voice can say (control characters such as NUL or ESC, lone
    surrogates, private-use and unassigned code points) turned into spaces.

    A NUL cannot travel in a program's arguments at all, and a lone surrogate cannot be
    encoded; either would fail the synthesis of the whole sentence.
    """
    if text.isprintable():  # the usual case, checked in C
        return text
    return "".join(
        " " if unicodedata.category(char) in _UNSPEAKABLE_CATEGORIES else char for char in text
    )


SynthesizerFactory = Callable[[str, int], Synthesizer]
"""An engine: builds the synthesizer of a voice speaking at a rate in words per minute. It
raises ``SpeechError`` when the engine cannot run at all; an unknown voice may fail only when
it first speaks."""


class EspeakSynthesizer:
    """The ``espeak-ng`` program: small, offline, many languages (``espeak-ng --voices``)."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 175) -> None:
        executable = shutil.which("espeak-ng")
        if executable is None:
            raise SpeechError(f"espeak-ng is not installed: {ESPEAK_PACKAGES}, or use --no-speak")
        if not 80 <= words_per_minute <= 450:
            raise ValueError(f"words_per_minute must be 80 to 450, not {words_per_minute}")
        self.executable = executable
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.sample_rate_hz = 22_050
        """espeak-ng's native output rate; updated from the first WAV it writes."""

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; return mono int16 PCM at ``sample_rate_hz``."""
        import soundfile as sf

        command = [self.executable, "-v", self.voice, "-s", str(self.words_per_minute)]
        spoken = speakable_text(text)
        try:
            done = subprocess.run(
                [*command, "--stdout", "--", spoken], capture_output=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"espeak-ng (voice {self.voice!r}) failed: {exc}") from None
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise SpeechError(f"espeak-ng (voice {self.voice!r}) failed: {message}")
        try:
            pcm, rate_hz = sf.read(io.BytesIO(done.stdout), dtype="int16", always_2d=True)
        except sf.SoundFileError as exc:
            raise SpeechError(f"espeak-ng wrote no readable WAV: {exc}") from None
        self.sample_rate_hz = rate_hz
        return np.ascontiguousarray(pcm[:, 0])


_ENGINES: dict[str, SynthesizerFactory] = {"espeak-ng": EspeakSynthesizer}


def register_engine(name: str, factory: SynthesizerFactory) -> None:
    """Make ``factory`` the engine called ``name`` (the ``speech.engine`` setting picks it)."""
    if not name.strip():
        raise ValueError("an engine needs a name")
    _ENGINES[name] = factory


def engine_names() -> list[str]:
    """The engines' names: those registered and those installed packages offer."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group=ENGINE_ENTRY_POINT_GROUP)}
    return sorted(set(_ENGINES) | installed)


def _engine(name: str) -> SynthesizerFactory:
    factory = _ENGINES.get(name)
    if factory is None:
        factory = _installed_engine(name)
    if factory is None:
        raise SpeechError(
            f"unknown speech engine {name!r} (speech.engine): there are {', '.join(engine_names())}"
        )
    return factory


def _installed_engine(name: str) -> SynthesizerFactory | None:
    """The engine an installed package offers as ``name``, loaded and registered; None if none.

    ``SpeechError`` naming the entry point when it cannot be loaded or is not callable.
    """
    from importlib.metadata import entry_points

    found = entry_points(group=ENGINE_ENTRY_POINT_GROUP, name=name)
    if not found:
        return None
    entry = next(iter(found))
    try:
        factory = entry.load()
    except Exception as exc:  # a plugin's import may fail in any way
        raise SpeechError(
            f"speech engine {name!r} ({entry.value}) cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(factory):
        raise SpeechError(f"speech engine {name!r} ({entry.value}) is not callable")
    engine: SynthesizerFactory = factory
    register_engine(name, engine)
    return engine


def make_synthesizer(
    settings: SpeechSettings,
    language: str | None = None,
    *,
    voice: str | None = None,
    words_per_minute: int | None = None,
) -> Synthesizer:
    """The synthesizer the ``speech`` settings describe.

    ``voice`` (else ``settings.voice``) fixes the voice; else ``language`` picks its voice from
    ``settings.language_voices``; else the result follows the language of each text it says.
    ``words_per_minute`` overrides the settings' rate. ``SpeechError`` for an unknown engine.
    """
    factory = _engine(settings.engine)
    rate = settings.words_per_minute if words_per_minute is None else words_per_minute
    fixed = voice or settings.voice
    if fixed is None and language is not None:
        fixed = settings.language_voices.get(language, settings.default_voice)
    if fixed is not None:
        return factory(fixed, rate)
    return LanguageFollowingSynthesizer(
        lambda name: factory(name, rate), settings.language_voices, settings.default_language
    )


def speech_problem(settings: SpeechSettings) -> str | None:
    """Why the ``speech`` settings cannot speak (every voice they name is tried, and the
    language model loaded), or None when they can. Blocking; once per process for the same
    settings, as a server tries them whenever it starts."""
    return _speech_problem(settings.model_dump_json())


@functools.lru_cache(maxsize=8)
def _speech_problem(settings_json: str) -> str | None:
    settings = SpeechSettings.model_validate_json(settings_json)
    try:
        check_voice(make_synthesizer(settings))
    except SpeechError as exc:
        return str(exc)
    return None


def check_voice(synthesizer: Synthesizer) -> None:
    """Say one word: an unknown voice or a missing program fails now (``SpeechError``), not
    at the first reply. Blocking."""
    if isinstance(synthesizer, LanguageFollowingSynthesizer):
        synthesizer.check()
    else:
        synthesizer.synthesize("ok")


class LanguageFollowingSynthesizer:
    """Speaks each text in the voice of its language (``language_voices``).

    The language of a text is guessed from the text itself (``LanguageGuesser``); when the
    guess is unsure (a short sentence) the previous language goes on, starting with
    ``language`` (the default language, or one ``prefer`` set, such as the language the user
    spoke in). One voice synthesizer per language, built when first needed.
    """

    def __init__(
        self,
        factory: Callable[[str], Synthesizer],
        language_voices: Mapping[str, str],
        language: str,
    ) -> None:
        if language not in language_voices:
            raise ValueError(f"no voice for the starting language {language!r}")
        self._factory = factory
        self._voices = dict(language_voices)
        self._synthesizers: dict[str, Synthesizer] = {}
        self._guesser = LanguageGuesser(self._voices)
        self.language = language
        """The language spoken last (or to be spoken when a text does not tell)."""
        self.sample_rate_hz = self._synthesizer(language).sample_rate_hz

    def prefer(self, language: str | None) -> None:
        """Speak ``language`` until a text clearly is in another (ignored without a voice)."""
        if language in self._voices:
            self.language = language

    @property
    def voice(self) -> str:
        """The voice of the current language."""
        return self._voices[self.language]

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text`` in the voice of its language; mono int16 at ``sample_rate_hz``."""
        self.language = self._guesser.guess(text) or self.language
        synthesizer = self._synthesizer(self.language)
        pcm = synthesizer.synthesize(text)
        self.sample_rate_hz = synthesizer.sample_rate_hz
        return pcm

    def check(self) -> None:
        """Say a word in every language's voice and load the language model (blocking)."""
        self._guesser.load()
        for language in self._voices:
            self._synthesizer(language).synthesize("ok")

    def _synthesizer(self, language: str) -> Synthesizer:
        synthesizer = self._synthesizers.get(language)
        if synthesizer is None:
            synthesizer = self._factory(self._voices[language])
            self._synthesizers[language] = synthesizer
        return synthesizer
