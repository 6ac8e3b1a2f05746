"""Reading recordings a block at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from assistant.audio.io import AudioError
from assistant.transcription.reader import AudioBlocks
from tests.transcription.recordings import recording


def read_all(source: Path | bytes) -> np.ndarray:
    with AudioBlocks(source) as blocks:
        return np.concatenate(list(blocks))


def test_stereo_44k_flac_becomes_16k_mono_of_the_same_length(tmp_path: Path) -> None:
    """A 44.1 kHz stereo FLAC is read as 16 kHz mono int16 of the same duration."""
    talk = recording(6).pcm
    stereo = np.stack([talk, talk], axis=1)
    path = tmp_path / "talk.flac"
    sf.write(path, soxr.resample(stereo, 16000, 44100).astype(np.int16), 44100)
    pcm = read_all(path)
    assert pcm.dtype == np.int16
    assert abs(len(pcm) - len(talk)) <= 16
    assert AudioBlocks(path).duration_s == pytest.approx(len(talk) / 16000, abs=0.01)


def test_mp3_is_read_in_blocks(tmp_path: Path) -> None:
    """An MP3 file decodes block by block to about its length."""
    talk = recording(4).pcm
    path = tmp_path / "talk.mp3"
    sf.write(path, talk, 16000, format="MP3")
    assert abs(len(read_all(path)) / 16000 - len(talk) / 16000) < 0.2


def test_the_bytes_of_a_file_read_like_the_file(tmp_path: Path) -> None:
    """Bytes (an upload) give the same samples as the file they came from."""
    path = tmp_path / "talk.wav"
    sf.write(path, recording(2).pcm, 16000, subtype="PCM_16")
    assert np.array_equal(read_all(path.read_bytes()), read_all(path))


def test_a_file_that_is_not_audio_is_refused(tmp_path: Path) -> None:
    """Text named .wav is an AudioError that says which formats are accepted."""
    path = tmp_path / "notes.wav"
    path.write_text("not audio", encoding="utf-8")
    with pytest.raises(AudioError, match=r"not readable audio.*WAV, FLAC"):
        AudioBlocks(path)


def test_mis_scaled_float_audio_is_refused(tmp_path: Path) -> None:
    """Float samples far beyond [-1, 1] are refused when their block is read."""
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(16000, 300.0, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="peaks at 300"):
        read_all(path)


def test_a_file_with_no_samples_is_refused(tmp_path: Path) -> None:
    """A valid WAV header with no samples is an AudioError, not an empty transcript."""
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="holds no samples"):
        read_all(path)
