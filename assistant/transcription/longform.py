"""Transcribing a recording of any length: pieces in batches, segments out in order.

``LongTranscription`` reads the recording a block at a time and cuts it into pieces
(``PieceCutter``) on a worker thread; pieces go to the model ``batch_pieces`` at a time
through transcription mode, greedy, each with its own token limit. While one batch is on the
model the next is read and cut, and submitted as soon as it is complete, so the model thread
never waits for the file. Segments come out in the order of the recording, a batch at a time.

At most two batches of pieces are held at once (reading stops while they wait): memory does
not grow with the length of the recording.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from assistant.config import TranscriptionSettings, VadSettings
from assistant.events import Transcription, TranscriptSegment
from assistant.model.backend import ModelBackend
from assistant.transcription.pieces import AudioPiece, PieceCutter
from assistant.transcription.reader import AudioBlocks

BATCHES_IN_FLIGHT = 2
"""Batches submitted to the model before the oldest one's segments are handed out."""


@dataclass
class Progress:
    """How far a long transcription has come; updated as batches finish."""

    duration_s: float
    """Length of the recording from its header (an estimate for some compressed formats)."""
    transcribed_s: float = 0.0
    """The end of the last piece transcribed, in the recording."""
    pieces: int = 0
    """Pieces transcribed."""
    languages_ms: dict[str, int] = field(default_factory=dict)
    """Speech per announced language, in milliseconds."""
    cut_off: list[int] = field(default_factory=list)
    """Indexes of the pieces whose text reached the token limit."""

    @property
    def language(self) -> str | None:
        """The language of most of the speech so far."""
        if not self.languages_ms:
            return None
        return max(self.languages_ms, key=lambda code: self.languages_ms[code])


class LongTranscription:
    """One recording to transcribe; iterate ``segments()`` once.

    ``source`` is a path or the bytes of an audio file. Opening it checks that it is audio
    (``AudioError`` otherwise) and reads its length.
    """

    def __init__(
        self,
        worker: ModelBackend,
        source: str | os.PathLike[str] | bytes,
        *,
        language: str | None = None,
        settings: TranscriptionSettings | None = None,
        vad: VadSettings | None = None,
        name: str | None = None,
    ) -> None:
        self.worker = worker
        self.language = language
        self.settings = settings or TranscriptionSettings()
        self._blocks = AudioBlocks(source, name=name)
        self._cutter = PieceCutter(self.settings, vad)
        self.progress = Progress(duration_s=self._blocks.duration_s)

    async def segments(self) -> AsyncIterator[TranscriptSegment]:
        """The recording's segments in order, a batch at a time; the file closes at the end."""
        pieces = self._pieces()
        reading: asyncio.Task[list[AudioPiece]] | None = None
        in_flight: collections.deque[tuple[list[AudioPiece], asyncio.Task[list[Transcription]]]]
        in_flight = collections.deque()
        try:
            while True:
                if reading is None:
                    reading = asyncio.create_task(
                        asyncio.to_thread(_take, pieces, self.settings.batch_pieces),
                        name="transcription-read",
                    )
                batch = await reading
                reading = None
                if batch:
                    in_flight.append((batch, self._submit(batch)))
                if in_flight and (not batch or len(in_flight) >= BATCHES_IN_FLIGHT):
                    done_batch, task = in_flight.popleft()
                    for segment in self._segments(done_batch, await task):
                        yield segment
                if not batch and not in_flight:
                    return
        finally:
            for _, task in in_flight:
                task.cancel()
            if reading is not None:
                reading.cancel()
                # The thread runs on until its read ends; the file closes after it.
                await asyncio.gather(reading, return_exceptions=True)
            await asyncio.gather(*(task for _, task in in_flight), return_exceptions=True)
            self._blocks.close()

    def _submit(self, batch: list[AudioPiece]) -> asyncio.Task[list[Transcription]]:
        coroutine = self.worker.transcribe_batch(
            [piece.pcm for piece in batch],
            self.language,
            max_new_tokens=self.settings.max_new_tokens,
        )
        return asyncio.create_task(coroutine, name=f"transcribe-pieces-{batch[0].index}")

    def _pieces(self) -> Iterator[AudioPiece]:
        for block in self._blocks:
            yield from self._cutter.feed(block)
        yield from self._cutter.finish()

    def _segments(
        self, batch: list[AudioPiece], results: list[Transcription]
    ) -> list[TranscriptSegment]:
        segments = []
        progress = self.progress
        for piece, result in zip(batch, results, strict=True):
            segment = TranscriptSegment(
                index=piece.index,
                start_ms=piece.start_ms,
                end_ms=piece.end_ms,
                text=result.text,
                language=result.language,
                cut=piece.cut,
                finish_reason=result.finish_reason,
            )
            segments.append(segment)
            progress.pieces += 1
            progress.transcribed_s = piece.end_ms / 1000
            if segment.language:
                spoken_ms = piece.end_ms - piece.start_ms
                progress.languages_ms[segment.language] = (
                    progress.languages_ms.get(segment.language, 0) + spoken_ms
                )
            if segment.finish_reason == "length":
                progress.cut_off.append(segment.index)
        return segments

    @property
    def position_s(self) -> float:
        """How far into the recording the reading has come."""
        return self._cutter.position_ms / 1000


def _take(pieces: Iterator[AudioPiece], count: int) -> list[AudioPiece]:
    """Up to ``count`` more pieces (fewer at the end of the recording); runs on a thread."""
    batch: list[AudioPiece] = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) == count:
            break
    return batch
