"""Long recordings: read a block at a time, cut at pauses, transcribed in batches.

The stage between an audio file and a transcript: ``reader`` (blocks of the file),
``pieces`` (VAD cuts of at most 30 s), ``longform`` (batches through the model's transcription
mode, segments in order) and ``formats`` (txt, json, srt, vtt).
"""

from assistant.transcription.formats import CUT_OFF_MARK, FORMATS, Format, SegmentWriter
from assistant.transcription.longform import LongTranscription, Progress
from assistant.transcription.pieces import AudioPiece, PieceCutter

__all__ = [
    "CUT_OFF_MARK",
    "FORMATS",
    "AudioPiece",
    "Format",
    "LongTranscription",
    "PieceCutter",
    "Progress",
    "SegmentWriter",
]
