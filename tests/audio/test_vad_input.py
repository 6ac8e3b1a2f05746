"""VadSegmenter's handling of input: dtypes, bad samples, sample rates, settings."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from assistant.audio.vad import VadSegmenter, segment
from assistant.config import VadSettings

from .tracks import lay_out, run, speech, utterances


@pytest.fixture(scope="module")
def track():
    """One phrase between two seconds of quiet."""
    return lay_out([1.0, speech("Lock the front door"), 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused_and_lose_nothing(track, bad: float) -> None:
    """A chunk with NaN or inf raises ValueError; the stream goes on as if it never came."""
    audio = track.pcm.astype(np.float32) / 32768.0
    segmenter = VadSegmenter()
    half = len(audio) // 2
    events = segmenter.process(audio[:half])
    poisoned = audio[half : half + 320].copy()
    poisoned[7] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        segmenter.process(poisoned)
    events += segmenter.process(audio[half:]) + segmenter.flush()
    clean = run(VadSegmenter(), audio, chunk_samples=half)
    assert [(u.start_ms, u.end_ms) for u in utterances(events)] == [
        (u.start_ms, u.end_ms) for u in utterances(clean)
    ]


@pytest.mark.parametrize(
    "chunk",
    [
        np.zeros(320, dtype=np.int32),
        np.zeros(320, dtype=np.uint8),
        np.zeros(320, dtype=np.complex64),
        [0] * 320,
        b"\x00" * 640,
    ],
    ids=["int32", "uint8", "complex64", "list", "bytes"],
)
def test_wrong_types_are_refused_with_a_clear_error(chunk) -> None:
    """Anything but an int16/float32/float64 numpy array raises TypeError naming what it got."""
    with pytest.raises(TypeError, match=r"int16, float32 or float64|numpy array"):
        VadSegmenter().process(chunk)


def test_multichannel_audio_is_refused() -> None:
    """A 2-D (stereo) array raises TypeError: the segmenter takes mono."""
    with pytest.raises(TypeError, match="mono"):
        VadSegmenter().process(np.zeros((320, 2), dtype=np.int16))


def test_float_and_int16_input_give_the_same_utterances(track) -> None:
    """float32 samples in -1..1 segment like the int16 samples they came from."""
    from_int16 = utterances(run(VadSegmenter(), track.pcm))
    from_float = utterances(run(VadSegmenter(), track.pcm.astype(np.float32) / 32767.0))
    assert [(u.start_ms, u.end_ms) for u in from_float] == [
        (u.start_ms, u.end_ms) for u in from_int16
    ]


def test_a_stream_keeps_its_sample_rate_until_reset() -> None:
    """Switching rates mid-stream raises ValueError; after reset() another rate is accepted."""
    segmenter = VadSegmenter()
    segmenter.process(np.zeros(480, dtype=np.int16), sample_rate_hz=48000)
    with pytest.raises(ValueError, match="48000 Hz"):
        segmenter.process(np.zeros(320, dtype=np.int16), sample_rate_hz=16000)
    segmenter.reset()
    assert segmenter.process(np.zeros(320, dtype=np.int16), sample_rate_hz=16000) == []


def test_a_non_positive_sample_rate_is_refused() -> None:
    """sample_rate_hz=0 raises ValueError."""
    with pytest.raises(ValueError, match="positive"):
        VadSegmenter().process(np.zeros(320, dtype=np.int16), sample_rate_hz=0)


def test_overrides_are_validated_like_settings() -> None:
    """An out-of-range override (aggressiveness 5) raises pydantic's ValidationError."""
    with pytest.raises(ValidationError, match="aggressiveness"):
        VadSegmenter(aggressiveness=5)


def test_overrides_replace_single_fields_of_the_settings() -> None:
    """Keyword overrides win over the settings object; other fields keep its values."""
    segmenter = VadSegmenter(VadSettings(silence_duration_ms=800), prefix_padding_ms=100)
    assert (segmenter.settings.silence_duration_ms, segmenter.settings.prefix_padding_ms) == (
        800,
        100,
    )


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_webrtc_frame_size_finds_the_phrase(track, frame_ms: int) -> None:
    """webrtcvad's 10, 20 and 30 ms frames all find the one phrase."""
    segmenter = VadSegmenter(frame_ms=frame_ms)
    assert segmenter.frame_samples == 16 * frame_ms
    assert len(utterances(run(segmenter, track.pcm))) == 1


def test_silero_threshold_one_hears_nothing(track) -> None:
    """With Silero's threshold at 1.0 no probability qualifies, so speech is not detected."""
    assert run(VadSegmenter(backend="silero", threshold=1.0), track.pcm) == []


async def test_segment_wraps_an_async_stream_and_flushes_at_its_end(track) -> None:
    """The async wrapper yields the sync machine's events, and flushes when frames run out."""

    async def frames():
        for offset in range(0, len(track.pcm) - 16000, 320):
            yield track.pcm[offset : offset + 320]

    events = [e async for e in segment(frames(), VadSegmenter(silence_duration_ms=2000))]
    expected = run(VadSegmenter(silence_duration_ms=2000), track.pcm[: len(track.pcm) - 16000])
    assert [type(e) for e in events] == [type(e) for e in expected]
    assert len(utterances(events)) == 1


def test_the_caller_may_reuse_its_buffer(track) -> None:
    """Overwriting a chunk after process() does not change the utterance built from it."""
    segmenter = VadSegmenter()
    buffer = np.empty(320, dtype=np.int16)
    events = []
    for offset in range(0, len(track.pcm) - 319, 320):
        buffer[:] = track.pcm[offset : offset + 320]
        events += segmenter.process(buffer)
    buffer[:] = 0
    (utterance,) = utterances(events + segmenter.flush())
    start = utterance.start_ms * 16
    assert np.array_equal(utterance.pcm, track.pcm[start : start + len(utterance.pcm)])


def test_settings_that_cannot_fit_in_max_utterance_are_refused() -> None:
    """min_speech_ms plus prefix padding at or beyond max_utterance_s raises ValueError."""
    with pytest.raises(ValueError, match="max_utterance_s"):
        VadSegmenter(min_speech_ms=2000, prefix_padding_ms=300, max_utterance_s=2.0)
