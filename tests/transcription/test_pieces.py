"""Cutting long recordings into pieces at pauses (no model involved)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from assistant.config import TranscriptionSettings
from assistant.transcription import AudioPiece, PieceCutter
from tests.transcription.recordings import SENTENCES, Recording, recording, speech

TAIL_MS = 400
"""espeak-ng ends each sentence with about 350 ms of near silence, which the VAD leaves out."""


def cut(pcm: np.ndarray, block_s: float = 10.0, **settings: object) -> list[AudioPiece]:
    cutter = PieceCutter(TranscriptionSettings.model_validate(settings))
    step = int(block_s * 16000)
    pieces: list[AudioPiece] = []
    for start in range(0, len(pcm), step):
        pieces += cutter.feed(pcm[start : start + step])
    return pieces + cutter.finish()


@pytest.fixture(scope="module")
def talk() -> Recording:
    """Twenty sentences with one-second pauses (about 93 s)."""
    return recording(20)


def test_no_piece_is_longer_than_the_longest_piece(talk: Recording) -> None:
    """Every piece lasts at most max_piece_s, and a 93 s talk needs several."""
    pieces = cut(talk.pcm, max_piece_s=30.0)
    assert len(pieces) >= 4
    assert all(p.end_ms - p.start_ms <= 30_000 for p in pieces)
    assert all(len(p.pcm) == (p.end_ms - p.start_ms) * 16 for p in pieces)


def test_every_sentence_lies_whole_in_one_piece(talk: Recording) -> None:
    """No sentence is split between pieces: each lies within a single piece."""
    pieces = cut(talk.pcm, max_piece_s=12.0)
    for start_ms, end_ms in talk.spans_ms:
        holders = [p for p in pieces if p.start_ms <= start_ms and p.end_ms >= end_ms - TAIL_MS]
        assert len(holders) == 1, (start_ms, end_ms, [(p.start_ms, p.end_ms) for p in pieces])


def test_pieces_end_at_pauses(talk: Recording) -> None:
    """Each piece ends in a pause between sentences, never inside one, and says so."""
    pieces = cut(talk.pcm, max_piece_s=12.0)
    for piece in pieces[:-1]:
        assert piece.cut == "pause"
        assert not any(s < piece.end_ms < e - TAIL_MS for s, e in talk.spans_ms), piece.end_ms
    assert pieces[-1].cut == "end"


def test_a_piece_holds_the_recordings_own_audio(talk: Recording) -> None:
    """A piece's samples are the recording's between its start and end, pauses included."""
    for piece in cut(talk.pcm, max_piece_s=20.0):
        expected = talk.pcm[piece.start_ms * 16 : piece.end_ms * 16]
        assert np.array_equal(piece.pcm, expected)


def test_block_sizes_do_not_change_the_pieces(talk: Recording) -> None:
    """Reading the recording in 1 s or 7.3 s blocks gives the same pieces."""
    small = [(p.start_ms, p.end_ms, p.cut) for p in cut(talk.pcm, block_s=1.0)]
    large = [(p.start_ms, p.end_ms, p.cut) for p in cut(talk.pcm, block_s=7.3)]
    assert small == large


def test_speech_without_a_pause_is_cut_hard_at_the_longest_piece() -> None:
    """Speech with no pause within max_piece_s is cut there, mid-speech, and marked hard."""
    talk = np.concatenate([speech(s) for s in SENTENCES * 2])  # 58 s, gaps under 400 ms
    pieces = cut(talk, max_piece_s=30.0, silence_duration_ms=1000)
    assert pieces[0].cut == "hard"
    assert pieces[0].end_ms - pieces[0].start_ms == 30_000
    assert pieces[1].start_ms == pieces[0].end_ms


def test_silence_gives_no_pieces() -> None:
    """A minute of silence holds no speech, so no piece."""
    assert cut(np.zeros(60 * 16000, dtype=np.int16)) == []


def test_memory_does_not_grow_with_the_recording() -> None:
    """Cutting 10 minutes of speech allocates at most a few MB (the recording is 19 MB)."""
    talk = recording(130).pcm  # about ten minutes
    assert len(talk) > 600 * 16000 * 0.95
    tracemalloc.start()
    try:
        cutter = PieceCutter()
        count = 0
        for start in range(0, len(talk), 160_000):
            count += len(cutter.feed(talk[start : start + 160_000]))
        count += len(cutter.finish())
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count >= 20
    assert peak_bytes < 8 * 2**20
