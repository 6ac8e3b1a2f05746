"""Spoken replies on ``/v1/realtime``: a response's text in, ``response.output_audio.*`` out.

The text of each assistant message is cut into sentences as it streams (``SentenceSplitter``).
Each sentence is synthesized on its session's own synthesis thread (``SessionVoice``: one
synthesis at a time per session, so a slow one delays only its own session, never the event
loop or another session), resampled to the session's output rate and base64-encoded there
too; then, on the event loop, its text goes out as one ``response.output_audio_transcript.delta``
and its audio as ``response.output_audio.delta`` events of ``AUDIO_DELTA_MS`` each.

Bounds: the audio sent runs at most ``lead_s`` ahead of real-time playback (counted from the
first delta), which bounds each session's synthesis work and its queued events; the text
waiting for synthesis is the reply itself (never dropped). ``stop`` (a cancel, a barge-in)
takes effect at once: nothing more is sent, a synthesis under way is let finish in its thread
and thrown away.

Each item's clips are kept (``ItemSpeech``), so that ``conversation.item.truncate`` can tell
which words the client played: speech is taken to run evenly over the words of a sentence
(``heard_prefix``), the same estimate ``listen`` makes when the user interrupts it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from assistant.config import SpeechSettings
from assistant.server.realtime.protocol import server_event
from assistant.speech.errors import SpeechError
from assistant.speech.sentences import Piece, SentenceSplitter, heard_prefix
from assistant.speech.synthesis import (
    LanguageFollowingSynthesizer,
    Synthesizer,
    check_voice,
    make_synthesizer,
)

log = logging.getLogger(__name__)

AUDIO_DELTA_MS = 200
"""Audio per ``response.output_audio.delta`` (9600 bytes of PCM16 at 24 kHz)."""

MIN_WORDS_PER_MINUTE, MAX_WORDS_PER_MINUTE = 80, 450
"""The speech rates espeak-ng accepts; ``speed`` scales ``speech.words_per_minute`` within them."""

SendEvent = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class SpokenClip:
    """One sentence as sent: its raw text and how many samples of audio it took."""

    text: str
    samples: int


@dataclass(eq=False)
class ItemSpeech:
    """The speech of one assistant message item, kept for ``conversation.item.truncate``."""

    item_id: str
    output_index: int
    text_before: str
    """The response's text before this item (its earlier messages), as streamed."""
    rate_hz: int
    clips: list[SpokenClip] = field(default_factory=list)
    audio_end_ms: float | None = None
    """Where a truncate cut the audio; None: all of it was kept."""

    @property
    def transcript(self) -> str:
        """The text whose audio was sent."""
        return "".join(clip.text for clip in self.clips)

    @property
    def duration_ms(self) -> float:
        """The item's audio, as sent or as truncated."""
        sent_ms = sum(clip.samples for clip in self.clips) * 1000 / self.rate_hz
        return sent_ms if self.audio_end_ms is None else min(sent_ms, self.audio_end_ms)

    def truncate(self, audio_end_ms: int) -> str:
        """Keep ``audio_end_ms`` of the audio; return the text heard in it (estimated).

        ``ValueError`` when that is more audio than the item has.
        """
        available_ms = self.duration_ms
        if audio_end_ms > math.ceil(available_ms):
            raise ValueError(
                f"audio_end_ms {audio_end_ms} is beyond the item's audio "
                f"({math.floor(available_ms)} ms)"
            )
        self.audio_end_ms = float(audio_end_ms)
        heard, start_ms = [], 0.0
        for clip in self.clips:
            clip_ms = clip.samples * 1000 / self.rate_hz
            if start_ms + clip_ms <= audio_end_ms:
                heard.append(clip.text)
            else:
                share = (audio_end_ms - start_ms) / clip_ms if clip_ms else 0.0
                heard.append(heard_prefix(clip.text, share))
                break
            start_ms += clip_ms
        return "".join(heard)


class SessionVoice:
    """One session's speech: its synthesizer (voice, speed) and the one thread that runs it."""

    def __init__(self, settings: SpeechSettings, name: str, unavailable: str | None) -> None:
        self.settings = settings
        self.unavailable = unavailable
        """Why this server cannot speak (found when it started), or None."""
        # The thread starts with the first synthesis; a text-only session never has one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-speech")
        self.synthesizer: Synthesizer | None = None
        """None until a voice is configured (and always when the server cannot speak)."""
        if unavailable is None:
            # The server's voice, which the server tried when it started.
            self.synthesizer = self._build(None, 1.0)

    def check_available(self) -> None:
        """``SpeechError`` saying why when this server cannot speak."""
        if self.unavailable is not None:
            raise SpeechError(self.unavailable)

    async def prepare(self, voice: str | None, speed: float) -> Synthesizer:
        """The synthesizer of ``voice`` (None: the server's voice) at ``speed``, to assign to
        ``synthesizer``. A named voice says a word first, on this session's thread;
        ``SpeechError`` when the server cannot speak or the voice does not exist."""
        self.check_available()
        synthesizer = self._build(voice, speed)
        if voice is not None:
            await self.run(check_voice, synthesizer)
        return synthesizer

    def _build(self, voice: str | None, speed: float) -> Synthesizer:
        rate = round(self.settings.words_per_minute * speed)
        rate = min(max(rate, MIN_WORDS_PER_MINUTE), MAX_WORDS_PER_MINUTE)
        return make_synthesizer(self.settings, voice=voice, words_per_minute=rate)

    def prefer_language(self, language: str | None) -> None:
        """The user spoke ``language``: the server's voice speaks it until a reply does not."""
        if isinstance(self.synthesizer, LanguageFollowingSynthesizer):
            self.synthesizer.prefer(language)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on this session's synthesis thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        """Let the thread go once a synthesis under way has finished (never waits)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class _Sentence:
    item: ItemSpeech
    piece: Piece


@dataclass(frozen=True, slots=True)
class _ItemEnd:
    done: asyncio.Future[None]


class ResponseSpeech:
    """Speaks the message items of one response, in order, as their text streams."""

    def __init__(
        self,
        voice: SessionVoice,
        send: SendEvent,
        *,
        response_id: str,
        rate_hz: int,
        lead_s: float,
    ) -> None:
        if voice.synthesizer is None:
            raise RuntimeError("the session's voice is not configured")
        self._voice = voice
        self._synthesizer = voice.synthesizer
        self._send = send
        self.response_id = response_id
        self.rate_hz = rate_hz
        self.lead_s = lead_s
        self.items: dict[str, ItemSpeech] = {}
        self.failure: str | None = None
        """Why speech stopped working in this response (the text still goes out)."""
        self._item: ItemSpeech | None = None
        self._splitter = SentenceSplitter()
        # Unbounded, as the text it holds is the reply itself (bounded by the reply length).
        self._queue: asyncio.Queue[_Sentence | _ItemEnd] = asyncio.Queue()
        self._waiting: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._sent_samples = 0
        self._first_audio_s: float | None = None

    @property
    def spoken_text(self) -> str:
        """The response's text whose speech was sent, all items together."""
        return "".join(item.transcript for item in self.items.values())

    def begin_item(self, item_id: str, output_index: int, text_before: str) -> None:
        """A new message item starts; the text fed next is its text."""
        self._item = ItemSpeech(item_id, output_index, text_before, self.rate_hz)
        self.items[item_id] = self._item
        self._splitter = SentenceSplitter()
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._speak(), name=f"{self.response_id}:speech")

    def feed(self, text: str) -> None:
        """More of the current item's text."""
        self._queue_pieces(self._splitter.feed_pieces(text))

    async def end_item(self) -> ItemSpeech | None:
        """The current item's text is complete: wait until all of it has been said (or until
        ``stop``); return its speech."""
        item, self._item = self._item, None
        if item is None:
            return None
        self._queue_pieces(self._splitter.flush_pieces(), item)
        if self._stopped:
            return item
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.add(done)
        self._queue.put_nowait(_ItemEnd(done))
        try:
            await done
        finally:
            self._waiting.discard(done)
        return item

    def stop(self) -> None:
        """Send nothing more, now; waiting ``end_item`` calls return."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
        self._release_waiters()

    def _queue_pieces(self, pieces: list[Piece], item: ItemSpeech | None = None) -> None:
        item = item or self._item
        if item is None or self._stopped:
            return
        for piece in pieces:
            self._queue.put_nowait(_Sentence(item, piece))

    def _release_waiters(self) -> None:
        for done in self._waiting:
            if not done.done():
                done.set_result(None)

    async def _speak(self) -> None:
        try:
            while True:
                job = await self._queue.get()
                if isinstance(job, _ItemEnd):
                    if not job.done.done():
                        job.done.set_result(None)
                    continue
                await self._say(job)
        except Exception:
            # A bug here must not leave the response waiting for speech forever: the
            # response ends with what was sent.
            log.exception("response %s: speech failed", self.response_id)
            self._stopped = True
        finally:
            self._release_waiters()

    async def _say(self, job: _Sentence) -> None:
        text = job.piece.spoken
        chunks: list[str] = []
        samples = 0
        if text and self.failure is None:
            await self._keep_pace()
            try:
                chunks, samples = await self._voice.run(self._render, text)
            except SpeechError as exc:
                self._fail(str(exc))
            except Exception as exc:
                # An engine (a plugin's, perhaps) broke its contract: this response goes on
                # as transcript only, and the next one tries again.
                log.exception("response %s: the synthesizer raised", self.response_id)
                self._fail(f"{type(exc).__name__}: {exc}")
        self._send_clip(job.item, job.piece.raw, chunks, samples)

    async def _keep_pace(self) -> None:
        """Hold the next sentence while the audio sent is over ``lead_s`` ahead of playback."""
        if self._first_audio_s is None:
            return
        loop = asyncio.get_running_loop()
        ahead_s = self._sent_samples / self.rate_hz - (loop.time() - self._first_audio_s)
        if ahead_s > self.lead_s:
            await asyncio.sleep(ahead_s - self.lead_s)

    def _render(self, text: str) -> tuple[list[str], int]:
        """On the synthesis thread: speech at the output rate, as base64 delta payloads."""
        pcm = self._synthesizer.synthesize(text)
        source_hz = self._synthesizer.sample_rate_hz
        if source_hz != self.rate_hz and len(pcm):
            pcm = np.asarray(soxr.resample(pcm, source_hz, self.rate_hz), dtype=np.int16)
        raw = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        step_bytes = self.rate_hz * AUDIO_DELTA_MS // 1000 * 2
        chunks = [
            base64.b64encode(raw[offset : offset + step_bytes]).decode("ascii")
            for offset in range(0, len(raw), step_bytes)
        ]
        return chunks, len(pcm)

    def _fail(self, reason: str) -> None:
        """Speech stops for the rest of this response; its text goes on as transcript."""
        self.failure = reason
        log.warning("response %s: speech failed: %s", self.response_id, reason)
        self._send(
            server_event(
                "error",
                error={
                    "type": "server_error",
                    "code": "audio_synthesis_failed",
                    "message": f"speech failed ({reason}); the reply goes on as transcript only",
                    "param": None,
                    "event_id": None,
                },
            )
        )

    def _send_clip(self, item: ItemSpeech, raw: str, chunks: list[str], samples: int) -> None:
        if self._stopped:
            return
        where = {
            "response_id": self.response_id,
            "item_id": item.item_id,
            "output_index": item.output_index,
            "content_index": 0,
        }
        if raw:
            self._send(server_event("response.output_audio_transcript.delta", **where, delta=raw))
        for chunk in chunks:
            self._send(server_event("response.output_audio.delta", **where, delta=chunk))
        item.clips.append(SpokenClip(raw, samples))
        if samples and self._first_audio_s is None:
            self._first_audio_s = asyncio.get_running_loop().time()
        self._sent_samples += samples
