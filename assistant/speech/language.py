"""Which language a sentence is in, among the few a voice is configured for (offline).

``LanguageGuesser`` asks py3langid (a small naive-Bayes model over byte n-grams that ships
with the package) and answers only when it is confident: short or ambiguous sentences ("OK.",
"Paris.") give no answer, and the caller keeps speaking the language it spoke before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

MIN_CONFIDENCE = 0.7
"""Probability (among the candidate languages) a guess needs to count. Measured on one-sentence
replies: full sentences score above 0.8, one-word ones ("Oui.", "Ja.") below 0.4."""

_identifier: Any = None
_identifier_lock = threading.Lock()


def _shared_identifier() -> Any:
    """py3langid's model over all its languages, loaded once per process (a second or so).

    It is never restricted (``set_languages`` would change it for every caller): each guess
    renormalizes over its own candidates instead, so threads can share it.
    """
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _identifier


class LanguageGuesser:
    """Guesses which of ``languages`` (ISO-639-1 codes) a text is written in.

    Blocking (the first guess loads the model): call it from a thread, as synthesis is.
    """

    def __init__(self, languages: Iterable[str], min_confidence: float = MIN_CONFIDENCE) -> None:
        self.languages = frozenset(languages)
        if not self.languages:
            raise ValueError("at least one candidate language is needed")
        self.min_confidence = min_confidence

    def load(self) -> None:
        """Load the model now rather than at the first guess."""
        _shared_identifier()

    def guess(self, text: str) -> str | None:
        """The language of ``text``, or None when it is not clear enough to say."""
        if len(self.languages) == 1:
            return next(iter(self.languages))
        if not any(char.isalpha() for char in text):
            return None
        ranked = _shared_identifier().rank(text)
        # Softmax restricted to the candidates = their probabilities renormalized.
        candidates = [(lang, p) for lang, p in ranked if lang in self.languages]
        total = sum(p for _, p in candidates)
        if not candidates or total <= 0:
            return None
        language, probability = candidates[0]
        return str(language) if probability / total >= self.min_confidence else None
