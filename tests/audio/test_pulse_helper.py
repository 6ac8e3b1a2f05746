"""The PulseAudio test helper: a private server with a virtual speaker and microphone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.testing.speech import write_wav
from tests.support.pulse import VirtualAudio

from .tracks import speech

# Starts a private PulseAudio server.
pytestmark = [pytest.mark.system, pytest.mark.audio_device]


def test_what_is_played_into_the_speaker_is_recorded_from_it(
    virtual_audio: VirtualAudio, tmp_path: Path
) -> None:
    """paplay into the sink and parec of its monitor give back the speech, at speech level."""
    pcm = speech("Testing one two three")
    wav = write_wav(str(tmp_path / "in.wav"), pcm)
    recording = virtual_audio.record(tmp_path / "out.wav")
    virtual_audio.play(wav)
    recorded, rate_hz = sf.read(recording.stop(), dtype="int16")
    assert rate_hz == 16000
    loud = np.flatnonzero(np.abs(recorded.astype(np.int32)) > 1000)
    heard_s = (loud[-1] - loud[0]) / rate_hz
    assert abs(heard_s - len(pcm) / 16000) <= 0.1


def test_the_virtual_microphone_is_the_default_source(virtual_audio: VirtualAudio) -> None:
    """pactl reports the remap source as default source and the null sink as default sink."""
    info = virtual_audio.pactl("info")
    assert f"Default Source: {virtual_audio.source_name}" in info
    assert f"Default Sink: {virtual_audio.sink_name}" in info


def test_stop_ends_the_daemon_and_restores_the_environment() -> None:
    """After the with block the server is gone and PULSE_SERVER is what it was before."""
    before = os.environ.get("PULSE_SERVER")
    with VirtualAudio() as audio:
        server = audio.server
        assert os.environ["PULSE_SERVER"] == server
        socket = Path(server.removeprefix("unix:"))
        assert socket.exists()
    assert os.environ.get("PULSE_SERVER") == before
    assert not socket.exists()
