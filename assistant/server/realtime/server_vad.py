"""The session's server VAD: a ``VadSegmenter`` for its turn detection, on the session's clock.

webrtcvad costs microseconds per chunk and runs inline; Silero costs ~30 ms of CPU per second of
audio, which on the event loop would delay every other client's events, so Silero is built and
run in threads.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import numpy as np

from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.server.realtime.session_state import EAGER_SILENCE_MS, TurnDetection


def vad_overrides(turn_detection: TurnDetection | None) -> dict[str, Any] | None:
    """The client's VAD settings that differ from the server's (None: manual commits)."""
    if turn_detection is None:
        return None
    if turn_detection.eagerness is not None:  # semantic_vad: the server's VAD, eager or not
        return {"eager_silence_ms": EAGER_SILENCE_MS[turn_detection.eagerness]}
    return {
        k: v
        for k, v in (
            ("threshold", turn_detection.threshold),
            ("prefix_padding_ms", turn_detection.prefix_padding_ms),
            ("silence_duration_ms", turn_detection.silence_duration_ms),
        )
        if v is not None
    }


class ServerVad:
    """Turn detection for one session; off (manual commits) until ``configure`` turns it on."""

    def __init__(self, base: VadSettings, name: str) -> None:
        self.base = base
        """The server's VAD settings; a client's ``turn_detection`` overrides some of them."""
        self._name = name
        self._segmenter: asyncio.Future[VadSegmenter] | None = None
        self.offset_ms = 0
        """The session clock's reading when the current segmenter started (its time zero)."""
        self.speech_item_id: str | None = None
        """The item id announced with ``speech_started``, until its utterance is committed."""

    @property
    def active(self) -> bool:
        """Whether server VAD is on."""
        return self._segmenter is not None

    @property
    def silero(self) -> bool:
        """Whether the VAD is Silero's network, which runs in threads, off the event loop."""
        return self.base.backend == "silero"

    def configure(self, overrides: dict[str, Any] | None, stream_ms: int) -> None:
        """(Re)build the segmenter with ``overrides`` from ``stream_ms`` on (None: turn it off)."""
        self.cancel()
        self._segmenter = None
        self.offset_ms = stream_ms
        self.speech_item_id = None
        if overrides is None:
            return
        build = functools.partial(VadSegmenter, self.base, **overrides)
        if self.silero:
            # ~50 ms of CPU: built in a thread while the client gets its microphone ready.
            self._segmenter = asyncio.create_task(
                asyncio.to_thread(build), name=f"{self._name}:vad"
            )
        else:
            self._segmenter = asyncio.get_running_loop().create_future()
            self._segmenter.set_result(build())

    async def ready(self) -> bool:
        """Wait until the segmenter is built (Silero's in a thread); False when VAD is off."""
        if self._segmenter is None:
            return False
        await self._segmenter
        return True

    async def detect(self, pcm: np.ndarray) -> list[Any]:
        """The VAD events for the next 16 kHz chunk (none when VAD is off)."""
        if self._segmenter is None:
            return []
        vad = await self._segmenter
        if self.silero:
            return await asyncio.to_thread(vad.process, pcm)
        return vad.process(pcm)

    @property
    def announced(self) -> Any:
        """The utterance the segmenter's standing ``SpeechEndLikely`` announced (None: none)."""
        vad = self._segmenter
        if vad is None or not vad.done() or vad.cancelled():
            return None
        return vad.result().announced

    async def end_early(self) -> list[Any]:
        """End the speech now if it has been silent for the session's ``eager_silence_ms`` (an
        eager end of turn; nothing when the session has none)."""
        if self._segmenter is None:
            return []
        return (await self._segmenter).end_early()

    async def flush(self) -> list[Any]:
        """End the current speech now (a manual commit): its remaining events."""
        if self._segmenter is None:
            return []
        return (await self._segmenter).flush()

    def reset(self, stream_ms: int) -> None:
        """Forget the speech in progress (the input buffer was cleared)."""
        if self._segmenter is not None and self._segmenter.done():
            self._segmenter.result().reset()
            self.offset_ms = stream_ms
            self.speech_item_id = None

    def cancel(self) -> None:
        """Stop building a Silero segmenter that is still on its way (the session closes)."""
        if self._segmenter is not None:
            self._segmenter.cancel()
