"""VadSegmenter on real espeak-ng speech laid out at known times, with both backends."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.vad import VadSegmenter
from assistant.events import (
    SpeechEndLikely,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    Utterance,
)

from .tracks import SAMPLES_PER_MS, lay_out, noise, run, speech, speech_events, utterances

BACKENDS = ["webrtc", "silero"]
TOLERANCE_MS = 100
PREFIX_MS = 300

PHRASES = [
    ("Turn on the kitchen lights please", "en-us", 160),
    ("What will the weather be like in Paris tomorrow", "en-gb", 130),
    ("Set a timer for ten minutes", "en-us+f3", 220),
    ("Play some jazz in the living room", "en-gb-scotland", 180),
    ("Remind me to call my mother tonight", "en-us+m3", 110),
    ("Schalte bitte das Licht im Flur aus", "de", 150),
]


def _conversation():
    clips = [speech(text, voice, wpm) for text, voice, wpm in PHRASES]
    gaps = [1.0, 1.5, 2.0, 1.2, 1.8, 1.5]
    parts: list = []
    for gap, clip in zip(gaps, clips, strict=True):
        parts += [gap, clip]
    return lay_out([*parts, 1.5])


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_utterance_is_found_once_with_accurate_boundaries(backend: str) -> None:
    """Six phrases (several voices and speeds) give six utterances within 100 ms of the truth."""
    track = _conversation()
    found = utterances(run(VadSegmenter(backend=backend), track.pcm))
    assert len(found) == len(track.speech_ms)
    for utterance, (start_ms, end_ms) in zip(found, track.speech_ms, strict=True):
        assert abs(utterance.start_ms + PREFIX_MS - start_ms) <= TOLERANCE_MS
        assert abs(utterance.end_ms - end_ms) <= TOLERANCE_MS
        assert not utterance.truncated


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_pauses_do_not_split_an_utterance(backend: str) -> None:
    """Pauses of 300 and 400 ms (below the 500 ms silence duration) stay inside one utterance."""
    track = lay_out(
        [1.0, speech("Turn on"), 0.3, speech("the lights"), 0.4, speech("in the hall"), 1.0]
    )
    found = utterances(run(VadSegmenter(backend=backend), track.pcm))
    assert len(found) == 1
    assert abs(found[0].end_ms - track.speech_ms[-1][1]) <= TOLERANCE_MS


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_pause_separates_two_utterances(backend: str) -> None:
    """A pause of 900 ms (above the silence duration) ends the first utterance."""
    track = lay_out([1.0, speech("Turn on the lights"), 0.9, speech("and close the blinds"), 1.0])
    found = utterances(run(VadSegmenter(backend=backend), track.pcm))
    assert len(found) == 2
    for utterance, (_, end_ms) in zip(found, track.speech_ms, strict=True):
        assert abs(utterance.end_ms - end_ms) <= TOLERANCE_MS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("kind", "level_dbfs"),
    [("silence", None), ("white", -45.0), ("pink", -35.0), ("hum", -40.0)],
)
def test_silence_and_background_noise_give_no_event(
    backend: str, kind: str, level_dbfs: float | None
) -> None:
    """Digital silence, white and pink noise and a 50 Hz hum at room levels trigger nothing."""
    seconds = 20.0
    if level_dbfs is None:
        pcm = np.zeros(round(seconds * 16000), dtype=np.float32)
    else:
        pcm = noise(kind, seconds, level_dbfs).astype(np.float32)
    assert run(VadSegmenter(backend=backend, aggressiveness=3), pcm) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_monologue_is_cut_at_max_utterance_s_and_the_rest_follows(backend: str) -> None:
    """45 s of talk: a 30 s utterance flagged truncated, then the rest up to the end of speech."""
    sentences = [
        "the quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore",
        "a journey of a thousand miles begins with a single step",
        "all that glitters is not gold",
    ]
    parts: list = [1.0]
    while sum(len(p) for p in parts[1:] if isinstance(p, np.ndarray)) < 46 * 16000:
        parts += [speech(sentences[len(parts) % len(sentences)]), 0.2]
    track = lay_out([*parts[:-1], 1.5])
    assert track.speech_ms[-1][1] - track.speech_ms[0][0] >= 45_000
    first, rest = utterances(run(VadSegmenter(backend=backend), track.pcm))
    assert first.truncated
    assert 29.9 <= first.duration_s <= 30.0
    # The rest starts at the cut, or after the 0.2 s pause the cut fell into.
    assert first.end_ms <= rest.start_ms <= first.end_ms + 200
    assert not rest.truncated
    assert abs(rest.end_ms - track.speech_ms[-1][1]) <= TOLERANCE_MS


@pytest.mark.parametrize(
    ("backend", "chunk_samples"),
    [
        ("webrtc", 1),
        ("webrtc", 7 * 16),
        ("webrtc", 333 * 16),
        ("silero", 7 * 16),
        ("silero", 333 * 16),
    ],
    ids=["webrtc-1-sample", "webrtc-7ms", "webrtc-333ms", "silero-7ms", "silero-333ms"],
)
def test_arbitrary_chunking_gives_the_same_utterances(backend: str, chunk_samples: int) -> None:
    """Chunks of 1 sample, 7 ms or 333 ms give exactly the utterances that 20 ms frames give."""
    track = lay_out(
        [0.7, speech("Open the garage door"), 0.8, speech("and turn on the radio"), 0.6]
    )
    expected = utterances(run(VadSegmenter(backend=backend), track.pcm, 320))
    got = utterances(run(VadSegmenter(backend=backend), track.pcm, chunk_samples))
    assert len(expected) == 2
    assert [(u.start_ms, u.end_ms, u.truncated) for u in got] == [
        (u.start_ms, u.end_ms, u.truncated) for u in expected
    ]
    assert all(np.array_equal(g.pcm, e.pcm) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    ("rate_hz", "dtype"), [(48000, np.float32), (44100, np.int16), (8000, np.float64)]
)
def test_other_sample_rates_are_resampled_to_the_same_boundaries(rate_hz: int, dtype) -> None:
    """A track at 48, 44.1 or 8 kHz (float or int16) is segmented like its 16 kHz original."""
    import soxr

    track = lay_out([1.0, speech("What time is it in Tokyo"), 1.0])
    resampled = soxr.resample(track.pcm.astype(np.float32) / 32768.0, 16000, rate_hz)
    chunk = (
        resampled.astype(dtype) if dtype != np.int16 else np.round(resampled * 32767).astype(dtype)
    )
    expected = utterances(run(VadSegmenter(), track.pcm))
    got = utterances(
        run(VadSegmenter(), chunk, chunk_samples=rate_hz // 50, sample_rate_hz=rate_hz)
    )
    assert len(got) == len(expected) == 1
    assert abs(got[0].start_ms - expected[0].start_ms) <= 40
    assert abs(got[0].end_ms - expected[0].end_ms) <= 40


def test_events_come_in_order_and_agree_with_the_utterance() -> None:
    """Started, stopped and the utterance share their times; the audio is the track's slice."""
    track = lay_out([1.0, speech("Good morning"), 1.0])
    events = speech_events(run(VadSegmenter(), track.pcm))
    started, stopped, utterance = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(stopped, SpeechStopped)
    assert isinstance(utterance, Utterance)
    assert (started.start_ms, stopped.end_ms) == (utterance.start_ms, utterance.end_ms)
    start, end = utterance.start_ms * SAMPLES_PER_MS, utterance.end_ms * SAMPLES_PER_MS
    assert np.array_equal(utterance.pcm, track.pcm[start:end])


def test_prefix_padding_keeps_the_audio_before_speech() -> None:
    """An utterance starts prefix_padding_ms before the first voiced frame."""
    track = lay_out([1.0, speech("Good morning"), 1.0])
    padded = utterances(run(VadSegmenter(prefix_padding_ms=500), track.pcm))[0]
    bare = utterances(run(VadSegmenter(prefix_padding_ms=0), track.pcm))[0]
    assert bare.start_ms - padded.start_ms == 500


def _first_heard(segmenter: VadSegmenter, pcm: np.ndarray) -> dict[type, tuple[int, object]]:
    """The first event of each type, with the stream time (ms) at which it came out."""
    heard_at: dict[type, tuple[int, object]] = {}
    for offset in range(0, len(pcm), 320):
        for event in segmenter.process(pcm[offset : offset + 320]):
            heard_at.setdefault(type(event), (segmenter.stream_ms, event))
    return heard_at


def test_end_of_speech_is_announced_early_and_confirmed_after_the_hangover() -> None:
    """SpeechEndLikely arrives at most 60 ms (QUIET_MIN_SAMPLES) after the last voiced frame;
    SpeechStopped a silence after that frame."""
    track = lay_out([1.0, speech("Switch off the television"), 1.5])
    heard_at = _first_heard(VadSegmenter(silence_duration_ms=700), track.pcm)
    likely_ms, likely = heard_at[SpeechEndLikely]
    stopped_ms, stopped = heard_at[SpeechStopped]
    assert isinstance(likely, SpeechEndLikely)
    assert isinstance(stopped, SpeechStopped)
    assert likely.at_ms < likely_ms <= likely.at_ms + 60
    assert stopped_ms == likely.at_ms + 700
    assert stopped.end_ms <= likely.at_ms


@pytest.mark.parametrize("text", ["Switch off the television", "Set a timer for ten minutes"])
def test_a_clear_drop_in_level_ends_speech_before_webrtcvads_own_hangover(text: str) -> None:
    """webrtcvad hears speech for ~100 ms after it ends; with quiet_db (the default) the end is
    announced within 80 ms of the true end and the hangover counts from there, not after it."""
    track = lay_out([1.0, speech(text), 1.5])
    true_end_ms = track.speech_ms[0][1]
    gated = _first_heard(VadSegmenter(silence_duration_ms=500), track.pcm)
    plain = _first_heard(VadSegmenter(silence_duration_ms=500, quiet_db=None), track.pcm)
    assert gated[SpeechEndLikely][0] - true_end_ms <= 80
    assert plain[SpeechEndLikely][0] - true_end_ms >= 100
    assert gated[SpeechStopped][0] - true_end_ms <= 500 + 80
    assert gated[SpeechStopped][0] < plain[SpeechStopped][0]
    # The same speech either way: the utterances end within a frame of each other.
    gated_end = gated[Utterance][1].end_ms  # type: ignore[attr-defined]
    assert abs(gated_end - plain[Utterance][1].end_ms) <= 20  # type: ignore[attr-defined]


def test_a_quiet_gap_shorter_than_60_ms_stays_inside_the_speech() -> None:
    """A 40 ms gap at the noise floor (the classifier still hears speech over it) neither hints
    an end nor splits the utterance; a 100 ms one hints an end that speech then resumes."""
    for gap_s, hinted in ((0.04, False), (0.1, True)):
        first, second = speech("Turn on the"), speech("kitchen lights")
        track = lay_out([1.0, first, gap_s, second, 1.5])
        events = run(VadSegmenter(silence_duration_ms=500), track.pcm)
        kinds = [type(event) for event in events]
        assert kinds.count(Utterance) == 1, (gap_s, kinds)
        assert (SpeechResumed in kinds) == hinted, (gap_s, kinds)
        if hinted:
            assert kinds.index(SpeechEndLikely) < kinds.index(SpeechResumed)


def test_an_eager_end_ends_speech_after_its_silence_with_the_announced_utterance() -> None:
    """end_early gives nothing during speech or before its silence; after it, the utterance that
    SpeechEndLikely announced, without waiting for silence_duration_ms."""
    track = lay_out([1.0, speech("Switch off the television"), 1.5])
    segmenter = VadSegmenter(silence_duration_ms=500)
    likely: SpeechEndLikely | None = None
    ended: list[object] = []
    for offset in range(0, len(track.pcm), 320):
        for event in segmenter.process(track.pcm[offset : offset + 320]):
            if isinstance(event, SpeechEndLikely) and likely is None:
                likely = event
        if likely is None:
            assert segmenter.end_early(0) == []  # still speaking, or not yet started
            continue
        ended = segmenter.end_early(120)
        if ended:
            break
    assert likely is not None and likely.utterance is not None
    assert [type(e) for e in ended] == [SpeechStopped, Utterance]
    # 120 ms of silence after the last voiced frame, to the frame (not 500).
    assert segmenter.stream_ms == likely.at_ms + 120
    assert ended[1].end_ms == likely.utterance.end_ms  # type: ignore[attr-defined]
    assert np.array_equal(ended[1].pcm, likely.utterance.pcm)  # type: ignore[attr-defined]
    # Nothing is left open: the rest of the silence gives no event, and a flush none either.
    rest = run(segmenter, track.pcm[offset + 320 :])
    assert rest == []


def test_no_eager_end_once_speech_has_resumed() -> None:
    """After SpeechResumed the announced end is off: end_early gives nothing until the next
    SpeechEndLikely, however long it is asked to wait."""
    track = lay_out([1.0, speech("Turn on"), 0.3, speech("the lights"), 1.0])
    segmenter = VadSegmenter(eager_silence_ms=0)
    resumed = False
    for offset in range(0, len(track.pcm), 320):
        events = segmenter.process(track.pcm[offset : offset + 320])
        if any(isinstance(e, SpeechResumed) for e in events):
            resumed = True
        if resumed and not any(isinstance(e, SpeechEndLikely) for e in events):
            assert segmenter.end_early() == []
        if resumed and any(isinstance(e, SpeechEndLikely) for e in events):
            break
    assert resumed


def test_a_pause_within_the_hangover_hints_an_end_but_does_not_stop() -> None:
    """A 300 ms pause yields a SpeechEndLikely, but speech resumes without a SpeechStopped."""
    track = lay_out([1.0, speech("Turn on"), 0.3, speech("the lights"), 1.0])
    events = run(VadSegmenter(), track.pcm)
    first_stop = next(i for i, e in enumerate(events) if isinstance(e, SpeechStopped))
    hints = [e for e in events[:first_stop] if isinstance(e, SpeechEndLikely)]
    assert len(hints) >= 2
    assert first_stop == len(events) - 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_blip_shorter_than_min_speech_is_ignored(backend: str) -> None:
    """A 100 ms snippet of speech gives nothing; 500 ms of the same phrase is an utterance."""
    phrase = speech("Turn on the kitchen lights please")
    blip = lay_out([1.0, phrase[: 100 * SAMPLES_PER_MS], 1.5])
    word = lay_out([1.0, phrase[: 500 * SAMPLES_PER_MS], 1.5])
    assert run(VadSegmenter(backend=backend), blip.pcm) == []
    assert len(utterances(run(VadSegmenter(backend=backend), word.pcm))) == 1


def test_flush_ends_open_speech_at_the_end_of_the_stream() -> None:
    """Speech still going when the input ends is closed by flush() as a complete utterance."""
    track = lay_out([1.0, speech("Where are my keys")], noise_dbfs=None)
    segmenter = VadSegmenter()
    segmenter.process(track.pcm)
    events = segmenter.flush()
    assert [type(e) for e in events] == [SpeechStopped, Utterance]
    assert abs(events[0].end_ms - track.speech_ms[0][1]) <= 20


def test_reset_starts_a_new_stream_at_time_zero() -> None:
    """After reset() the same track gives the same timestamps again."""
    track = lay_out([1.0, speech("Good night"), 1.0])
    segmenter = VadSegmenter()
    first = utterances(run(segmenter, track.pcm))
    segmenter.reset()
    again = utterances(run(segmenter, track.pcm))
    assert [(u.start_ms, u.end_ms) for u in again] == [(u.start_ms, u.end_ms) for u in first]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cut_on_the_first_silent_frame_leaves_no_empty_utterance(backend: str) -> None:
    """max_utterance_s running out exactly as speech ends gives one utterance, not an empty one."""
    track = lay_out([1.0, speech("Turn off the radio"), 1.5])
    events = run(VadSegmenter(backend=backend), track.pcm)
    [started] = [e for e in events if isinstance(e, SpeechStarted)]
    last_hint = [e for e in events if isinstance(e, SpeechEndLikely)][-1]
    # The first silent frame after speech is the first frame past max_utterance_s.
    max_utterance_s = (last_hint.at_ms - started.start_ms + 1) / 1000
    cut = utterances(run(VadSegmenter(backend=backend, max_utterance_s=max_utterance_s), track.pcm))
    assert [len(u.pcm) > 0 for u in cut] == [True]
    assert cut[0].end_ms == last_hint.at_ms


class _HearsSpeechEverywhere:
    """A classifier that reports speech in every frame (as webrtcvad does in its hangover)."""

    frame_samples = 320

    def is_speech(self, frame: np.ndarray) -> bool:
        return True

    def reset(self) -> None:
        pass


def _tone(ms: int, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(16 * ms) / 16000
    return np.round(amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def _level_gated(**overrides: object) -> VadSegmenter:
    """A segmenter whose only way to hear silence is the drop in level (quiet_db)."""
    segmenter = VadSegmenter(**overrides)  # type: ignore[arg-type]
    segmenter._classifier = _HearsSpeechEverywhere()
    return segmenter


def test_announced_is_the_hinted_utterance_until_speech_resumes_or_ends() -> None:
    """VadSegmenter.announced: the very utterance SpeechEndLikely carried, then None after
    SpeechResumed, after SpeechStopped, after flush and after reset."""
    quiet = np.zeros(16 * 100, np.int16)
    segmenter = _level_gated(silence_duration_ms=500)
    assert segmenter.announced is None
    events = segmenter.process(np.concatenate([_tone(400), quiet]))
    hint = next(e for e in events if isinstance(e, SpeechEndLikely))
    assert segmenter.announced is hint.utterance
    events = segmenter.process(_tone(300))
    assert SpeechResumed in [type(e) for e in events] and segmenter.announced is None
    segmenter.process(quiet)
    assert segmenter.announced is not None
    events = segmenter.process(np.zeros(16 * 600, np.int16))
    stopped = [e for e in events if isinstance(e, Utterance)]
    assert stopped and segmenter.announced is None
    segmenter.process(np.concatenate([_tone(400), quiet]))
    assert segmenter.announced is not None
    assert utterances(segmenter.flush()) and segmenter.announced is None
    segmenter.process(np.concatenate([_tone(400), quiet]))
    segmenter.reset()
    assert segmenter.announced is None


def test_quiet_frames_held_at_a_flush_are_left_out_of_the_utterance() -> None:
    """Speech, then 40 ms of near silence (held, undecided), then flush: the utterance ends
    with the tone, not with the held frames."""
    segmenter = _level_gated(prefix_padding_ms=0)
    events = segmenter.process(np.concatenate([_tone(400), np.zeros(16 * 40, np.int16)]))
    assert not any(isinstance(e, SpeechEndLikely) for e in events)  # held, not yet silence
    (utterance,) = utterances(segmenter.flush())
    assert utterance.end_ms == 400


def test_a_cut_at_max_utterance_on_a_held_quiet_frame_ends_the_speech_there() -> None:
    """A quiet frame held at the max_utterance_s cut ends the speech like a silent frame (else
    the end of a command that ran out of time would become an utterance of silence): the
    speech after it starts a new utterance once confirmed again."""
    segmenter = _level_gated(max_utterance_s=1.0, prefix_padding_ms=0, min_speech_ms=100)
    pcm = np.concatenate([_tone(980), np.zeros(16 * 40, np.int16), _tone(300)])
    events = segmenter.process(pcm) + segmenter.flush()
    cut, rest = utterances(events)
    assert cut.truncated and cut.end_ms == 980
    assert not rest.truncated and rest.start_ms >= 1000 and rest.end_ms == 1320
