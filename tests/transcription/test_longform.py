"""Long transcriptions on the tiny model: batches, order, parity, marks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, VoxtralForConditionalGeneration

from assistant.config import TranscriptionSettings
from assistant.events import TranscriptSegment
from assistant.testing.speech import write_wav
from assistant.transcription import LongTranscription
from assistant.transcription.pieces import PieceCutter
from tests.model.conftest import Recorders
from tests.transcription.recordings import recording

SHORT_PIECES = TranscriptionSettings(max_piece_s=5.0, batch_pieces=4)
"""One sentence per piece (they are under 4.5 s with their padding)."""


@pytest.fixture(scope="module")
def talk_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight sentences with one-second pauses, as a WAV file (about 38 s)."""
    path = tmp_path_factory.mktemp("long") / "talk.wav"
    return Path(write_wav(str(path), recording(8).pcm))


async def transcribe(job: LongTranscription) -> list[TranscriptSegment]:
    return [segment async for segment in job.segments()]


async def test_each_piece_gets_its_own_transcript_in_order(make_worker, talk_file) -> None:
    """Segments come in recording order, each with its piece's times and forced text."""
    texts = [f"Sentence number {n}." for n in range(8)]
    worker = make_worker(transcripts=texts)
    job = LongTranscription(worker, talk_file, language="en", settings=SHORT_PIECES)
    segments = await transcribe(job)
    assert [s.text for s in segments] == texts
    assert [s.index for s in segments] == list(range(8))
    starts = [s.start_ms for s in segments]
    assert starts == sorted(starts)
    assert all(s.end_ms - s.start_ms <= 5_000 and s.language == "en" for s in segments)


async def test_pieces_are_batched(make_worker, talk_file) -> None:
    """Eight pieces in batches of four take two generate calls, not eight."""
    recorders = Recorders()
    worker = make_worker(recorders)
    settings = SHORT_PIECES.model_copy(update={"max_new_tokens": 2})
    await transcribe(LongTranscription(worker, talk_file, language="en", settings=settings))
    assert len(recorders.calls) == 2


async def test_each_pieces_tokens_equal_the_reference_transcription(
    make_worker, talk_file, tiny_model_dir, tmp_path
) -> None:
    """Batched pieces get exactly the tokens of apply_transcription_request + greedy generate
    on that piece alone."""
    model = VoxtralForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    cutter = PieceCutter(SHORT_PIECES)
    with LongTranscription(make_worker(), talk_file, settings=SHORT_PIECES)._blocks as blocks:
        pieces = [p for block in blocks for p in cutter.feed(block)] + cutter.finish()
    expected = []
    for piece in pieces[:4]:
        path = write_wav(str(tmp_path / f"piece{piece.index}.wav"), piece.pcm)
        inputs = processor.apply_transcription_request(audio=path, model_id="tiny", language="en")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
        expected.append(tokens[: tokens.index(2) + 1] if 2 in tokens else tokens)
    recorders = Recorders()
    worker = make_worker(recorders)
    settings = SHORT_PIECES.model_copy(update={"max_new_tokens": 12})
    await transcribe(LongTranscription(worker, talk_file, language="en", settings=settings))
    first_batch = recorders.calls[0]
    assert [first_batch.generated(row) for row in range(4)] == expected


async def test_a_piece_that_reaches_the_token_limit_says_so(make_worker, talk_file) -> None:
    """A transcript longer than max_new_tokens ends with finish_reason length."""
    long_text = "word " * 40
    worker = make_worker(transcripts=[long_text, *["Short."] * 7])
    settings = TranscriptionSettings(max_piece_s=5.0, batch_pieces=2, max_new_tokens=8)
    job = LongTranscription(worker, talk_file, language="en", settings=settings)
    segments = await transcribe(job)
    assert segments[0].finish_reason == "length"
    assert segments[1].finish_reason == "stop"
    assert job.progress.cut_off == [0]


async def test_the_language_of_most_speech_is_the_recordings(make_worker, talk_file) -> None:
    """Without a language each piece announces its own; the file's is that of most speech."""
    texts = ["lang:fr Bonjour.", *["lang:en Hello."] * 7]
    worker = make_worker(transcripts=texts)
    job = LongTranscription(worker, talk_file, settings=SHORT_PIECES)
    segments = await transcribe(job)
    assert [s.language for s in segments[:2]] == ["fr", "en"]
    assert segments[0].text == "Bonjour."
    assert job.progress.language == "en"


async def test_segments_come_out_before_the_recording_is_done(make_worker, talk_file) -> None:
    """The first segments are handed out while later batches have not reached the model."""
    recorders = Recorders()
    worker = make_worker(recorders)
    settings = TranscriptionSettings(max_piece_s=5.0, batch_pieces=1, max_new_tokens=1)
    job = LongTranscription(worker, talk_file, language="en", settings=settings)
    async for segment in job.segments():
        assert segment.index == 0
        assert len(recorders.calls) <= 2  # of eight
        break
