"""Long clips on the model thread: windowed encoding with progress, the transcription limit."""

from __future__ import annotations

from mistral_common.protocol.instruct.messages import TextChunk, UserMessage

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from tests.model.conftest import Recorders

GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)


def _messages(clips):
    return [UserMessage(content=[audio_chunk(clips["long"]), TextChunk(text="Summary?")])]


async def test_a_long_clip_reports_progress_per_encoder_call(make_worker, clips) -> None:
    """With one window per encoder call, a two-window clip takes two calls, each reported."""
    worker = make_worker(encoder_batch_windows=1)
    seen: list[tuple[int, int]] = []
    stream = worker.respond(
        _messages(clips), params=GREEDY, on_progress=lambda d, t: seen.append((d, t))
    )
    await stream.done()
    assert worker.engine.stats.encoder_calls == 2
    assert seen == [(1, 2), (2, 2)]


async def test_encoding_in_window_batches_keeps_the_tokens(make_worker, clips) -> None:
    """One window per encoder call generates exactly the tokens of one call for all windows."""
    tokens = []
    for windows in (1, 16):
        recorders = Recorders()
        worker = make_worker("v7", recorders, encoder_batch_windows=windows)
        await worker.respond(_messages(clips), params=GREEDY).done()
        tokens.append(recorders.calls[0].generated())
    assert tokens[0] == tokens[1]
    assert len(tokens[0]) > 1


async def test_a_transcription_cut_off_at_its_limit_says_length(make_worker, clips) -> None:
    """transcribe() keeps the finish reason: the free tiny model reaches a 3-token limit."""
    worker = make_worker()
    result = await worker.transcribe(clips["short"], "en", max_new_tokens=3)
    assert result.finish_reason == "length"
