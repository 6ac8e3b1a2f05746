"""Voice activity detection: speech events and complete utterances from any 16 kHz stream.

The public face of ``assistant.audio.vad``.
"""

from assistant.audio.vad import (
    SILERO_FRAME_SAMPLES,
    SileroClassifier,
    VadEvent,
    VadSegmenter,
    WebRtcClassifier,
    make_classifier,
    segment,
    to_int16,
)

__all__ = [
    "SILERO_FRAME_SAMPLES",
    "SileroClassifier",
    "VadEvent",
    "VadSegmenter",
    "WebRtcClassifier",
    "make_classifier",
    "segment",
    "to_int16",
]
