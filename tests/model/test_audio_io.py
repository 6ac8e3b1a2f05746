"""load_audio / audio_chunk: every source becomes float32 mono 16 kHz, or a clear AudioError."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio.io import AudioError, audio_chunk, load_audio
from assistant.events import Utterance
from assistant.testing.speech import synthesize


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize("Hello there")


def test_int16_array_is_scaled_to_float(speech: np.ndarray) -> None:
    """int16 samples become floats in [-1, 1] with the same length."""
    audio = load_audio(speech)
    assert audio.dtype == np.float32 and len(audio) == len(speech)
    np.testing.assert_allclose(audio, speech / 32768.0, atol=1e-7)


def test_array_at_another_rate_is_resampled(speech: np.ndarray) -> None:
    """A 48 kHz array comes back at 16 kHz (a third of the samples)."""
    at_48k = np.repeat(speech.astype(np.float32) / 32768.0, 3)
    audio = load_audio(at_48k, sample_rate_hz=48000)
    assert abs(len(audio) - len(speech)) <= 1


def test_stereo_is_mixed_to_mono(speech: np.ndarray) -> None:
    """(samples, 2) and (2, samples) arrays both average their channels."""
    left = speech.astype(np.float32) / 32768.0
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    np.testing.assert_allclose(load_audio(stereo), left / 2, atol=1e-7)
    np.testing.assert_allclose(load_audio(stereo.T), left / 2, atol=1e-7)


def test_utterance_is_accepted(speech: np.ndarray) -> None:
    """An events.Utterance from the VAD is read at its own sample rate."""
    utterance = Utterance(pcm=speech, start_ms=0, end_ms=1000)
    assert len(load_audio(utterance)) == len(speech)


@pytest.mark.parametrize(
    ("extension", "fmt"), [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")]
)
def test_files_of_every_format_load(
    tmp_path: Path, speech: np.ndarray, extension: str, fmt: str
) -> None:
    """WAV, FLAC, OGG and MP3 files (here at 22.05 kHz) load at 16 kHz with the same duration."""
    import soxr

    path = tmp_path / f"speech.{extension}"
    sf.write(
        path, soxr.resample(speech.astype(np.float32) / 32768.0, 16000, 22050), 22050, format=fmt
    )
    audio = load_audio(path)
    assert abs(len(audio) / 16000 - len(speech) / 16000) < 0.1
    assert np.abs(audio).max() > 0.05


def test_file_bytes_load(tmp_path: Path, speech: np.ndarray) -> None:
    """The bytes of a WAV file load like the file."""
    path = tmp_path / "speech.wav"
    sf.write(path, speech, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path.read_bytes()), load_audio(path))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (np.zeros(0, dtype=np.int16), "holds no samples"),
        (np.zeros((0, 2), dtype=np.float32), "holds no samples"),
        (np.full(16000, 20000.0), r"must be in \[-1, 1\].*peaks at 20000.*int16 array"),
        (b"", "empty"),
        (b"definitely not audio", "not readable audio"),
        (np.array([0.1, np.nan], dtype=np.float32), "NaN"),
        (np.zeros((2, 3, 4), dtype=np.float32), "mono"),
        (np.zeros(10, dtype=np.complex64), "sample type"),
    ],
)
def test_bad_audio_is_a_clear_error(source, message: str) -> None:
    """Empty, unreadable or malformed audio raises AudioError saying what is wrong."""
    with pytest.raises(AudioError, match=message):
        load_audio(source)


EXPECTED = (
    "expected WAV, FLAC, OGG (Vorbis or Opus) or MP3 audio: 8- to 32-bit integer or float "
    "samples, any sample rate, mono or more channels"
)


@pytest.mark.parametrize(
    "content",
    [b"definitely not audio", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"],
    ids=["text", "wav-header-without-data"],
)
def test_bytes_that_are_not_audio_say_what_is_expected(content: bytes) -> None:
    """Unreadable bytes give libsndfile's reason and the accepted formats, never an object repr."""
    with pytest.raises(AudioError) as caught:
        load_audio(content)
    message = str(caught.value)
    assert message.startswith("audio data is not readable audio (")
    assert message.endswith(f"); {EXPECTED}")
    assert "object at 0x" not in message and "<_io" not in message


def test_a_file_that_is_not_audio_says_what_is_expected(tmp_path: Path) -> None:
    """A file of text named .wav is refused by its path, with the accepted formats."""
    path = tmp_path / "notes.wav"
    path.write_text("shopping list", encoding="utf-8")
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert str(caught.value) == (
        f"audio file {path} is not readable audio (Format not recognised); {EXPECTED}"
    )


def test_empty_stereo_array_raises_without_warning() -> None:
    """An empty (0, 2) array says it is empty, with no NaN RuntimeWarning from mixing channels."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioError, match="holds no samples"):
            load_audio(np.zeros((0, 2), dtype=np.float32))


@pytest.mark.parametrize("rate_hz", [0, -16000])
def test_rate_that_is_not_positive_is_a_clear_error(rate_hz: int) -> None:
    """sample_rate_hz=0 or below is refused, not taken as 16 kHz."""
    with pytest.raises(AudioError, match=f"invalid sample rate {rate_hz} Hz"):
        load_audio(np.zeros(16000, dtype=np.float32), sample_rate_hz=rate_hz)


def test_codec_overshoot_above_one_is_accepted(tmp_path: Path) -> None:
    """A full-scale square wave through MP3 decodes above 1.0 and still loads, unscaled."""
    square = np.sign(np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    path = tmp_path / "square.mp3"
    sf.write(path, square, 16000, format="MP3")
    decoded, _ = sf.read(path, dtype="float32")
    assert np.abs(decoded).max() > 1.0
    np.testing.assert_array_equal(load_audio(decoded), decoded)


def test_float_file_far_outside_one_is_a_clear_error(tmp_path: Path) -> None:
    """A float WAV holding int16-range values is refused, naming the file and its peak."""
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(1600, 20000.0, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"loud\.wav peaks at 20000$"):
        load_audio(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist names the file."""
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")


def test_folder_is_a_clear_error(tmp_path: Path) -> None:
    """A folder given as the audio path is called a folder, not a missing file."""
    with pytest.raises(AudioError, match="is a folder, not an audio file"):
        load_audio(tmp_path)


def test_audio_chunk_holds_the_audio(speech: np.ndarray) -> None:
    """audio_chunk wraps the 16 kHz audio in a mistral-common AudioChunk."""
    from mistral_common.tokens.tokenizers.audio import Audio

    audio = Audio.from_audio_chunk(audio_chunk(speech))
    assert audio.sampling_rate == 16000
    np.testing.assert_allclose(audio.audio_array, speech / 32768.0, atol=1e-4)
