"""The echo canceller: frame-size guard, far-end resampling, and the echo of a simulated room.

The room tests run in stream time (``tests.support.echo_sim``): a reply handed to a "sound
card" block by block, its echo through a ``Room`` at the microphone, optionally the user
talking over it. No sound device, so they are the same on a busy machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.echo import (
    ADAPTED_CHECK_FRAMES,
    ADAPTED_CHECKS,
    AEC_FRAME_SAMPLES,
    WARM_UP_FAR_END_S,
    WARM_UP_LIMIT_S,
    WebRtcEchoCanceller,
    check_near_frame,
)
from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.events import SpeechStarted
from assistant.speech.synthesis import EspeakSynthesizer
from assistant.testing.speech import synthesize
from tests.support.echo_sim import CallResult, erle_db, simulate_call
from tests.support.room import Room

REPLY = (
    "This reply is long on purpose.",
    "It goes on for a few sentences, so that the echo canceller has time to learn the room.",
    "That leaves time to talk over it, and to measure how much of the echo is left.",
)
USER_AT_S = 8.0


@pytest.fixture(scope="module")
def reply() -> tuple[np.ndarray, int]:
    """The reply as the speaker gets it: espeak-ng at its own rate (22.05 kHz)."""
    espeak = EspeakSynthesizer()
    return np.concatenate([espeak.synthesize(s) for s in REPLY]), espeak.sample_rate_hz


def _speech_starts_ms(pcm: np.ndarray) -> list[int]:
    """When the default VAD hears speech start in ``pcm`` (stream time, ms)."""
    segmenter = VadSegmenter(VadSettings())
    starts: list[int] = []
    for offset in range(0, len(pcm) - 320 + 1, 320):
        starts += [e.start_ms for e in segmenter.process(pcm[offset : offset + 320])
                   if isinstance(e, SpeechStarted)]  # fmt: skip
    return starts


def _call(reply: tuple[np.ndarray, int], cancel: bool, **options: object) -> CallResult:
    canceller = WebRtcEchoCanceller() if cancel else None
    return simulate_call(canceller, reply[0], reply[1], Room(), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("samples", [1, 80, 159, 161, 240, 330])
def test_frames_that_are_not_whole_10_ms_are_refused_not_fatal(samples: int) -> None:
    """Any size but whole 10 ms raises ValueError (the native code would abort the process)."""
    canceller = WebRtcEchoCanceller()
    with pytest.raises(ValueError, match="whole 10 ms"):
        canceller.process(np.zeros(samples, dtype=np.int16))


def test_frames_of_the_wrong_type_are_refused() -> None:
    """Float or 2-D microphone frames raise ValueError before any native call."""
    with pytest.raises(ValueError, match="int16"):
        check_near_frame(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="int16"):
        check_near_frame(np.zeros((160, 2), dtype=np.int16))


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_vad_frame_size_is_processed_to_the_same_length(frame_ms: int) -> None:
    """10, 20 and 30 ms frames (the VAD's sizes) come back cleaned, same length and type."""
    canceller = WebRtcEchoCanceller()
    frame = (np.sin(np.arange(16 * frame_ms) / 5) * 3000).astype(np.int16)
    out = canceller.process(frame)
    assert out.dtype == np.int16 and out.shape == frame.shape
    assert canceller.near_frames == frame_ms // 10


def test_the_far_end_is_taken_at_any_rate_and_block_size() -> None:
    """Odd blocks at 22.05 kHz become 16 kHz 10 ms frames (leftovers wait for the next block)."""
    canceller = WebRtcEchoCanceller()
    one_s = (np.sin(np.arange(22050) / 7) * 5000).astype(np.int16)
    for offset in range(0, len(one_s), 1000):
        canceller.far_end(one_s[offset : offset + 1000], 22050)
    # soxr holds back a few ms at the end of the stream: nearly a full second arrives.
    assert 95 <= canceller.far_frames <= 100


TONE = (np.sin(np.arange(AEC_FRAME_SAMPLES) / 3) * 4000).astype(np.int16)


def _play_and_hear(canceller: WebRtcEchoCanceller, frames: int, heard: np.ndarray) -> None:
    """``frames`` 10 ms of the tone played, the microphone hearing ``heard`` for each."""
    for _ in range(frames):
        canceller.far_end(TONE, 16000)
        canceller.process(heard)


def test_without_a_microphone_it_is_ready_only_after_the_warm_up_limit() -> None:
    """Silence does not count; sound alone (nothing heard to check) makes it ready only at
    ``WARM_UP_LIMIT_S``, so the agent does not stay half-duplex for good."""
    canceller = WebRtcEchoCanceller()
    for _ in range(300):
        canceller.far_end(np.zeros(AEC_FRAME_SAMPLES, dtype=np.int16), 16000)
    limit = round(WARM_UP_LIMIT_S * 100)
    for _ in range(limit - 1):
        canceller.far_end(TONE, 16000)
    assert not canceller.ready
    canceller.far_end(TONE, 16000)
    assert canceller.ready
    assert canceller.ready_erle_db is None


def test_an_echo_it_does_not_remove_keeps_it_half_duplex() -> None:
    """Loud sound at the microphone that AEC3 cannot take out (it is not the far end's echo)
    fails every check: after the warm-up and twice the checks' length it is still not ready."""
    canceller = WebRtcEchoCanceller()
    noise = np.random.default_rng(1).normal(0, 3000, AEC_FRAME_SAMPLES * 1000).astype(np.int16)
    for index in range(round((WARM_UP_FAR_END_S + 3.0) * 100)):
        canceller.far_end(TONE, 16000)
        at = (index % 1000) * AEC_FRAME_SAMPLES
        canceller.process(noise[at : at + AEC_FRAME_SAMPLES])
    assert not canceller.ready


def test_with_no_echo_at_the_microphone_it_is_ready_after_the_warm_up_and_the_checks() -> None:
    """Headphones: the microphone hears only a quiet room while the reply plays. Ready once the
    warm-up and ``ADAPTED_CHECKS`` stretches have passed, not before."""
    canceller = WebRtcEchoCanceller()
    quiet = np.random.default_rng(2).normal(0, 30, AEC_FRAME_SAMPLES).astype(np.int16)
    checks = ADAPTED_CHECKS * ADAPTED_CHECK_FRAMES
    _play_and_hear(canceller, round(WARM_UP_FAR_END_S * 100) + checks - 1, quiet)
    assert not canceller.ready
    _play_and_hear(canceller, 1, quiet)
    assert canceller.ready


def test_the_echo_of_a_reply_is_removed(reply: tuple[np.ndarray, int]) -> None:
    """Once warmed up, the echo is at least 30 dB quieter."""
    call = _call(reply, cancel=True)
    assert call.ready_at_s is not None
    end_s = len(call.mic) / 16000 - 1.5
    assert erle_db(call.echo, call.out, call.ready_at_s, end_s) >= 30


def test_without_the_canceller_the_echo_starts_speech(reply: tuple[np.ndarray, int]) -> None:
    """The control: the room's echo, left alone, is speech to the VAD."""
    assert _speech_starts_ms(_call(reply, cancel=False).out)


def test_the_residual_echo_never_starts_speech(reply: tuple[np.ndarray, int]) -> None:
    """Once warmed up, what is left of the echo is never speech to the VAD (no self-barge-in)."""
    call = _call(reply, cancel=True)
    assert call.ready_at_s is not None
    assert [ms for ms in _speech_starts_ms(call.out) if ms > call.ready_at_s * 1000] == []


def test_the_user_talking_over_the_reply_is_heard(reply: tuple[np.ndarray, int]) -> None:
    """Double talk: the user's speech over the reply starts speech within half a second."""
    user = synthesize("Stop, stop, what about tomorrow?")
    call = _call(reply, cancel=True, user=user, user_at_s=USER_AT_S)
    assert call.ready_at_s is not None and call.ready_at_s < USER_AT_S
    starts = [ms for ms in _speech_starts_ms(call.out) if ms > call.ready_at_s * 1000]
    assert starts, "the user's speech was not heard"
    # start_ms includes the VAD's 300 ms of prefix padding.
    assert USER_AT_S * 1000 - 400 <= starts[0] <= USER_AT_S * 1000 + 500
