"""Cutting a long recording at pauses into pieces the model takes in one encoder window.

``PieceCutter`` is a synchronous state machine over the recording's 16 kHz int16 blocks, in
order. The VAD (``VadSegmenter``) finds the stretches of speech; consecutive stretches are
packed into one piece while the piece, from the start of its first stretch to the end of its
last, stays within ``max_piece_s`` (30 s = one window, 375 audio tokens). A piece therefore
ends at a pause, with the pauses inside it kept as they are. A stretch that runs ``max_piece_s``
without a pause is cut there by the VAD, mid-speech: its piece says so (``cut == "hard"``).
Audio in which the VAD finds no speech belongs to no piece.

Memory stays bounded whatever the length of the recording: the cutter keeps only the audio
from the start of the open piece (at most ``max_piece_s``) plus the VAD's look-back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assistant.audio.vad import VadSegmenter
from assistant.config import TranscriptionSettings, VadSettings
from assistant.events import SAMPLE_RATE_HZ, PieceCut, Utterance

_SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000


@dataclass(frozen=True, eq=False)
class AudioPiece:
    """A piece of a recording: its audio and where it lies in the recording."""

    index: int
    pcm: np.ndarray
    """16 kHz mono int16, at most ``max_piece_s`` long."""
    start_ms: int
    end_ms: int
    cut: PieceCut


class PieceCutter:
    """Feed a recording's blocks in order (``feed``), then ``finish``; each returns the pieces
    it completed."""

    def __init__(
        self, settings: TranscriptionSettings | None = None, vad: VadSettings | None = None
    ) -> None:
        self.settings = settings or TranscriptionSettings()
        self._vad = VadSegmenter(
            vad,
            silence_duration_ms=self.settings.silence_duration_ms,
            max_utterance_s=self.settings.max_piece_s,
        )
        self._max_samples = round(self.settings.max_piece_s * SAMPLE_RATE_HZ)
        s = self._vad.settings
        # How far back an utterance that the VAD has not yet reported may begin: a whole
        # piece, its prefix padding, the silence that ends it, and a second of slack.
        self._look_back_samples = (
            self._max_samples
            + (s.prefix_padding_ms + s.silence_duration_ms + 1000) * _SAMPLES_PER_MS
        )
        self._buffer = np.zeros(0, dtype=np.int16)
        self._buffer_start = 0
        """Sample position of ``_buffer[0]`` in the recording."""
        self._position = 0
        """Samples fed so far."""
        self._open: tuple[int, int] | None = None
        """(start, end) in samples of the piece being packed."""
        self._count = 0
        self.speech_ms = 0
        """Speech found so far (the sum of the pieces' lengths)."""

    @property
    def position_ms(self) -> int:
        """How much of the recording was fed."""
        return self._position // _SAMPLES_PER_MS

    def feed(self, pcm: np.ndarray) -> list[AudioPiece]:
        """Take the next block (16 kHz mono int16) of the recording."""
        self._buffer = np.concatenate([self._buffer, pcm])
        self._position += len(pcm)
        pieces: list[AudioPiece] = []
        for event in self._vad.process(pcm):
            if isinstance(event, Utterance):
                pieces.extend(self._add(event))
        if self._open is not None and self._nothing_more_fits(self._open[0]):
            pieces.append(self._close("pause"))
        self._trim()
        return pieces

    def finish(self) -> list[AudioPiece]:
        """The end of the recording: the pieces still open."""
        pieces: list[AudioPiece] = []
        for event in self._vad.flush():
            if isinstance(event, Utterance):
                pieces.extend(self._add(event))
        if self._open is not None:
            pieces.append(self._close("end"))
        return pieces

    def _add(self, utterance: Utterance) -> list[AudioPiece]:
        start = utterance.start_ms * _SAMPLES_PER_MS
        end = utterance.end_ms * _SAMPLES_PER_MS
        pieces: list[AudioPiece] = []
        if self._open is not None and end - self._open[0] > self._max_samples:
            pieces.append(self._close("pause"))
        self._open = (self._open[0] if self._open is not None else start, end)
        if utterance.truncated:
            pieces.append(self._close("hard"))
        return pieces

    def _nothing_more_fits(self, start: int) -> bool:
        """Whether every utterance the VAD reports from now on would end too late to join."""
        return self._position - start > self._look_back_samples

    def _close(self, cut: PieceCut) -> AudioPiece:
        assert self._open is not None  # only called with a piece open
        start, end = self._open
        self._open = None
        pcm = self._buffer[start - self._buffer_start : end - self._buffer_start].copy()
        piece = AudioPiece(
            index=self._count,
            pcm=pcm,
            start_ms=start // _SAMPLES_PER_MS,
            end_ms=end // _SAMPLES_PER_MS,
            cut=cut,
        )
        self._count += 1
        self.speech_ms += piece.end_ms - piece.start_ms
        return piece

    def _trim(self) -> None:
        keep_from = max(0, self._position - self._look_back_samples)
        if self._open is not None:
            keep_from = min(keep_from, self._open[0])
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:].copy()
            self._buffer_start = keep_from
