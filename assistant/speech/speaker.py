"""The voice of the assistant: sentences in, sound out, while the reply is still streaming.

``Speaker`` ties a ``Synthesizer`` and an ``AudioPlayer`` together: it synthesizes the next
sentence while the current one plays, reports each sentence it played (``SpokenSentence``),
says whether it is speaking (for the half-duplex echo gate) and stops at once on a barge-in,
telling how much of the reply was actually heard.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from assistant.audio.closing import close_bounded, in_daemon_thread, wait_bounded
from assistant.events import SpokenSentence
from assistant.speech.errors import SpeechError
from assistant.speech.playback import AudioPlayer
from assistant.speech.sentences import heard_prefix, speakable
from assistant.speech.synthesis import Synthesizer

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
"""How long ``aclose()`` waits for the sentence playing to stop, and for an output kept open
(``ContinuousPlayer``) to close."""


@dataclass(frozen=True, slots=True)
class _Clip:
    text: str
    pcm: np.ndarray
    sample_rate_hz: int
    sentence: bool = True
    """False for a sound (a chime): neither reported as spoken nor part of what was heard."""


class Speaker:
    """Says sentences in order, one synthesized ahead of the one playing.

    ``say()`` queues a sentence and returns at once; ``drain()`` waits until everything queued
    has been heard; ``interrupt()`` stops now and returns the text that was heard.
    """

    def __init__(
        self,
        synthesizer: Synthesizer,
        player: AudioPlayer,
        *,
        on_spoken: Callable[[SpokenSentence], None] | None = None,
        on_speaking: Callable[[bool], None] | None = None,
    ) -> None:
        self.synthesizer = synthesizer
        self.player = player
        self.on_spoken = on_spoken
        """Called on the event loop with a ``SpokenSentence`` after each sentence."""
        self.on_speaking = on_speaking
        """Called with True when sound starts and with False when the queue has run dry."""
        self._texts: asyncio.Queue[str | _Clip] = asyncio.Queue()
        # One clip waits while the previous plays: synthesis stays one sentence ahead.
        self._clips: asyncio.Queue[_Clip] = asyncio.Queue(maxsize=1)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = threading.Event()
        self._heard: list[str] = []
        self._playing = False
        self.last_sound_end_s = 0.0
        """``time.monotonic()`` when the last sound stopped (0 before any)."""
        self.failure: SpeechError | None = None
        """Set when speech failed; later sentences are then skipped."""
        self._tasks: list[asyncio.Task[None]] = []
        self._playback: asyncio.Future[float] | None = None

    @property
    def speaking(self) -> bool:
        """Whether a sentence is playing or waiting to be played."""
        return self._pending > 0

    async def start(self) -> Speaker:
        """Start the synthesis and playback tasks."""
        self._tasks = [
            asyncio.create_task(self._synthesize_loop(), name="tts-synthesize"),
            asyncio.create_task(self._play_loop(), name="tts-play"),
        ]
        return self

    def say(self, text: str) -> None:
        """Queue one sentence (ignored when it has nothing to say)."""
        text = speakable(text)
        if not text:
            return
        self._pending += 1
        self._idle.clear()
        self._texts.put_nowait(text)

    def play(self, pcm: np.ndarray, sample_rate_hz: int) -> None:
        """Queue a sound (mono int16), played in turn with the sentences; not a sentence."""
        self._pending += 1
        self._idle.clear()
        self._texts.put_nowait(_Clip("", pcm, sample_rate_hz, sentence=False))

    async def drain(self) -> None:
        """Wait until every queued sentence has been played (or dropped by a failure)."""
        await self._idle.wait()

    async def interrupt(self) -> str:
        """Stop speaking now, drop what is queued; return the text heard since the last reset."""
        while not self._texts.empty():
            self._texts.get_nowait()
            self._done_one()
        if self._pending:
            self._stop.set()
            await self._idle.wait()
        self._stop.clear()
        return self.take_heard()

    def take_heard(self) -> str:
        """The text heard so far (whole sentences and the heard share of a cut one); resets it."""
        heard, self._heard = " ".join(self._heard), []
        return heard

    async def aclose(self) -> None:
        """Stop speaking and end the tasks; the output device is closed on return."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._playback is not None:
            # Cancelling the task left its thread playing: it stops within a block of ``_stop``,
            # unless the sound server is stuck (then it is left behind).
            await wait_bounded(self._playback, "the speaker", CLOSE_TIMEOUT_S, doing="stop")
        close = getattr(self.player, "close", None)
        if close is not None:  # a player that keeps its output open (ContinuousPlayer)
            await close_bounded(close, "the speaker", CLOSE_TIMEOUT_S)

    async def __aenter__(self) -> Speaker:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _done_one(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
            if self._playing:
                self._playing = False
                self.last_sound_end_s = time.monotonic()
                if self.on_speaking:
                    self.on_speaking(False)

    async def _synthesize_loop(self) -> None:
        while True:
            text = await self._texts.get()
            if self.failure is not None:
                self._done_one()
                continue
            if isinstance(text, _Clip):  # a sound: nothing to synthesize
                await self._clips.put(text)
                continue
            try:
                pcm = await asyncio.to_thread(self.synthesizer.synthesize, text)
            except Exception as exc:
                self._fail(exc)
                self._done_one()
                continue
            await self._clips.put(_Clip(text, pcm, self.synthesizer.sample_rate_hz))

    async def _play_loop(self) -> None:
        while True:
            clip = await self._clips.get()
            if self._stop.is_set() or self.failure is not None:
                self._done_one()
                continue
            if not self._playing:
                self._playing = True
                if self.on_speaking:
                    self.on_speaking(True)
            # A daemon thread, not the loop's executor: a write or stop stuck in a wedged
            # sound server must not keep the program from ending (see ``aclose``).
            self._playback = in_daemon_thread(
                functools.partial(self.player.play, clip.pcm, clip.sample_rate_hz, self._stop),
                name="speaker",
            )
            try:
                heard_s = await asyncio.shield(self._playback)
            except Exception as exc:
                self._fail(exc)
            else:
                if clip.sentence:
                    self._record(clip, heard_s)
            self._done_one()

    def _fail(self, exc: Exception) -> None:
        """Speech stops for good; the sentences still queued are dropped, ``drain()`` returns."""
        if not isinstance(exc, SpeechError):
            # Not a failure we foresaw: keep the traceback in the log, the session goes on.
            log.error("speech failed", exc_info=exc)
            exc = SpeechError(f"speech failed: {type(exc).__name__}: {exc}")
        self.failure = exc

    def _record(self, clip: _Clip, heard_s: float) -> None:
        duration_s = len(clip.pcm) / clip.sample_rate_hz
        interrupted = heard_s < duration_s - 1e-3
        if interrupted:
            heard = heard_prefix(clip.text, heard_s / duration_s if duration_s else 0.0)
        else:
            heard = clip.text
        if heard:
            self._heard.append(heard)
        if self.on_spoken:
            self.on_spoken(
                SpokenSentence(text=clip.text, duration_s=heard_s, interrupted=interrupted)
            )
