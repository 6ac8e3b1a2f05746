"""Wake words: a stream of 16 kHz frames in, "the wake word was just said" out.

``WakeWordDetector`` is the interface; ``MicroWakeWordDetector`` runs one of the microWakeWord
models that the ``pymicro-wakeword`` package bundles in its wheel (Apache-2.0 weights, with
TensorFlow Lite's C library), fully offline, a few percent of a core. The package has wheels
for Linux (x86_64, aarch64) and Windows only: elsewhere (macOS) ``load_wake_word`` fails with
one clear sentence.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import numpy as np

WAKE_WORDS: dict[str, str] = {
    "okay_nabu": "Okay Nabu",
    "alexa": "Alexa",
    "hey_mycroft": "Hey Mycroft",
    "hey_jarvis": "Hey Jarvis",
}
"""The bundled models by name, and the phrase each listens for."""

WAKE_WORD_PACKAGE = "pip install 'pymicro-wakeword>=2.5,<3'"


class WakeWordUnavailable(RuntimeError):
    """The wake word cannot be detected here; the message says why and what to do."""


class WakeWordDetector(Protocol):
    """Listens for one wake word in 16 kHz mono int16 frames."""

    name: str
    phrase: str
    """What to say, e.g. ``Okay Nabu``."""

    def process(self, frame: np.ndarray) -> bool:
        """Feed one frame (any length); True when the wake word was just completed."""
        ...

    def reset(self) -> None:
        """Forget the audio heard so far (after a detection, or when listening starts again)."""
        ...


class MicroWakeWordDetector:
    """One of pymicro-wakeword's bundled microWakeWord models (``WAKE_WORDS``)."""

    def __init__(self, name: str) -> None:
        if name not in WAKE_WORDS:
            raise ValueError(f"unknown wake word {name!r}; choose one of {', '.join(WAKE_WORDS)}")
        module = _import_pymicro_wakeword()
        self.name = name
        self.phrase = WAKE_WORDS[name]
        try:
            self._model: Any = module.MicroWakeWord.from_builtin(module.Model(name))
        except (OSError, ValueError) as exc:  # the bundled TFLite library does not load here
            raise WakeWordUnavailable(
                f"the wake word model {name!r} cannot run on this machine: {exc}"
            ) from None
        self._features: Any = module.MicroWakeWordFeatures()
        self.probability_cutoff = float(self._model.probability_cutoff)
        """Mean probability above which the model fires (from the model's own settings)."""

    def process(self, frame: np.ndarray) -> bool:
        """Feed one 16 kHz int16 frame; True (once) when the wake word has just been said."""
        if frame.dtype != np.int16 or frame.ndim != 1:
            raise ValueError(f"wake word frames are 1-D int16, not {frame.dtype} {frame.shape}")
        detected = False
        for features in self._features.process_streaming(frame.tobytes()):
            if self._model.process_streaming(features):
                detected = True
        if detected:
            # The model's window still holds the phrase: start afresh, or it fires again.
            self.reset()
        return detected

    def reset(self) -> None:
        """Clear the feature buffer and the model's streaming state."""
        self._features.reset()
        self._model.reset()


def load_wake_word(name: str) -> MicroWakeWordDetector:
    """The detector for ``name``; ``WakeWordUnavailable`` (one sentence) when it cannot run."""
    return MicroWakeWordDetector(name)


def _import_pymicro_wakeword() -> Any:
    try:
        import pymicro_wakeword
    except ImportError:
        if sys.platform == "darwin":
            raise WakeWordUnavailable(
                "wake words are not available on macOS: pymicro-wakeword publishes no macOS "
                "wheel (its TensorFlow Lite library is built for Linux and Windows only); run "
                "without --wake-word"
            ) from None
        raise WakeWordUnavailable(
            f"wake words need the pymicro-wakeword package: {WAKE_WORD_PACKAGE}"
        ) from None
    except OSError as exc:
        raise WakeWordUnavailable(f"pymicro-wakeword cannot load here: {exc}") from None
    return pymicro_wakeword
