"""Speech engines from installed packages: the voxtral_assistant.speech_engines entry points."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from assistant.config import SpeechSettings
from assistant.speech.errors import SpeechError
from assistant.speech.synthesis import engine_names, make_synthesizer

ENGINE_MODULE = '''
import numpy as np


class Beep:
    """One 440 Hz tone per text, a tenth of a second per character."""

    def __init__(self, voice, words_per_minute):
        self.voice = voice
        self.sample_rate_hz = 8000

    def synthesize(self, text):
        t = np.arange(len(text) * 800) / 8000
        return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
'''


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> str:
    """Put a package offering one engine (entry point ``value``) on sys.path; its name."""
    suffix = uuid.uuid4().hex[:8]
    name = f"beep-{suffix}"
    module = f"beep_engine_{suffix}"
    (tmp_path / f"{module}.py").write_text(ENGINE_MODULE)
    info = tmp_path / f"beep_engine_{suffix}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: beep-engine-{suffix}\n")
    (info / "entry_points.txt").write_text(
        f"[voxtral_assistant.speech_engines]\n{name} = {value.format(module=module)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_an_installed_package_engine_speaks_by_its_name(tmp_path, monkeypatch) -> None:
    """speech.engine naming an entry point loads that package's factory, with the voice given."""
    name = _install(tmp_path, monkeypatch, "{module}:Beep")
    assert name in engine_names()
    synthesizer = make_synthesizer(SpeechSettings(engine=name, voice="any"))
    pcm = synthesizer.synthesize("hello")
    assert (synthesizer.sample_rate_hz, len(pcm)) == (8000, 4000)
    assert np.abs(pcm).max() > 7000
    assert getattr(synthesizer, "voice", None) == "any"


def test_an_engine_that_cannot_be_loaded_is_a_speech_error_naming_it(tmp_path, monkeypatch) -> None:
    """An entry point whose object does not exist: SpeechError naming the engine and its
    entry point, not an ImportError or AttributeError."""
    name = _install(tmp_path, monkeypatch, "{module}:Missing")
    with pytest.raises(SpeechError, match=f"{name}.*Missing.*cannot be loaded"):
        make_synthesizer(SpeechSettings(engine=name, voice="any"))
