"""Spoken replies: sentences in, sound out, while the reply is still streaming.

``SentenceSplitter`` cuts streamed text into sentences the moment each is complete, so speech
starts with the first sentence instead of waiting for the whole reply. A ``Synthesizer`` turns a
sentence into PCM (``EspeakSynthesizer`` runs the ``espeak-ng`` program); an ``AudioPlayer``
plays it (``SoundDevicePlayer``, PortAudio through sounddevice). ``Speaker`` ties them together:
it synthesizes the next sentence while the current one plays, reports each sentence it played
(``SpokenSentence``), says whether it is speaking (for the half-duplex echo gate) and stops at
once on a barge-in, telling how much of the reply was actually heard.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from assistant.events import SpokenSentence

log = logging.getLogger(__name__)

ESPEAK_PACKAGES = "apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS)"

# Words that end with a full stop without ending the sentence.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "approx", "e.g", "i.e", "cf", "fig"}
)
_CLOSERS = "\"')]}»”’"
_END_MARKS = ".!?…"
# What may follow an end mark inside the same sentence: more marks, quotes, closing markup.
_TRAILERS = _END_MARKS + _CLOSERS + "*_`"
_MARKUP = re.compile(r"[*_#`~]+")
_SPACES = re.compile(r"\s+")


class SpeechError(RuntimeError):
    """Speech cannot be produced or played; the message says why and what to do."""


# --- sentences -------------------------------------------------------------------------------


def speakable(text: str) -> str:
    """``text`` without Markdown markup and with runs of white space collapsed."""
    return _SPACES.sub(" ", _MARKUP.sub("", text)).strip()


def _ends_sentence(buffer: str, mark: int) -> bool:
    """Whether the end mark at ``buffer[mark]`` closes a sentence (not ``Dr.`` or ``J.``)."""
    if buffer[mark] != ".":
        return True
    word = buffer[:mark].rsplit(None, 1)[-1] if buffer[:mark].strip() else ""
    word = word.lstrip("(\"'«“‘")
    if word.lower() in _ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: "J. R. R. Tolkien"
    line_start = buffer.rfind("\n", 0, mark) + 1
    # A list marker ("1. Preheat the oven") opens a sentence rather than ending one.
    return not (word.isdigit() and not buffer[line_start:mark].strip().replace(word, "", 1))


class SentenceSplitter:
    """Cuts streamed text into complete sentences as soon as each one ends.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (plus closing quotes or brackets) followed by
    white space, or at a line break. A run longer than ``max_chars`` without an end is cut at its
    last comma or space, so a long sentence does not hold speech back.
    """

    def __init__(self, max_chars: int = 250) -> None:
        if max_chars < 10:
            raise ValueError(f"max_chars must be at least 10, not {max_chars}")
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the sentences it completed (cleaned for speech)."""
        self._buffer += text
        sentences: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            cleaned = speakable(piece)
            if cleaned:
                sentences.append(cleaned)
        return sentences

    def flush(self) -> list[str]:
        """The text left over at the end of the reply, as a last sentence (if it says anything)."""
        rest, self._buffer = speakable(self._buffer), ""
        return [rest] if rest else []

    def _next_cut(self) -> int | None:
        buffer = self._buffer
        for index, char in enumerate(buffer):
            if char == "\n":
                return index + 1
            if char not in _END_MARKS:
                continue
            after = index + 1
            while after < len(buffer) and buffer[after] in _TRAILERS:
                after += 1
            if after < len(buffer) and buffer[after].isspace() and _ends_sentence(buffer, index):
                return after
        if len(buffer) > self.max_chars:
            window = buffer[: self.max_chars]
            for separator in (", ", "; ", ": ", " "):
                position = window.rfind(separator)
                if position > 0:
                    return position + len(separator)
            return self.max_chars
        return None


# --- synthesis and playback ------------------------------------------------------------------


class Synthesizer(Protocol):
    """Text to mono int16 PCM; blocking (the ``Speaker`` runs it in a thread)."""

    sample_rate_hz: int

    def synthesize(self, text: str) -> np.ndarray: ...


class EspeakSynthesizer:
    """The ``espeak-ng`` program: small, offline, many languages (``espeak-ng --voices``)."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 175) -> None:
        executable = shutil.which("espeak-ng")
        if executable is None:
            raise SpeechError(f"espeak-ng is not installed: {ESPEAK_PACKAGES}, or use --no-speak")
        if not 80 <= words_per_minute <= 450:
            raise ValueError(f"words_per_minute must be 80 to 450, not {words_per_minute}")
        self.executable = executable
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.sample_rate_hz = 22_050
        """espeak-ng's native output rate; updated from the first WAV it writes."""

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; return mono int16 PCM at ``sample_rate_hz``."""
        import soundfile as sf

        command = [self.executable, "-v", self.voice, "-s", str(self.words_per_minute)]
        try:
            done = subprocess.run(
                [*command, "--stdout", "--", text], capture_output=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"espeak-ng (voice {self.voice!r}) failed: {exc}") from None
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise SpeechError(f"espeak-ng (voice {self.voice!r}) failed: {message}")
        try:
            pcm, rate_hz = sf.read(io.BytesIO(done.stdout), dtype="int16", always_2d=True)
        except sf.SoundFileError as exc:
            raise SpeechError(f"espeak-ng wrote no readable WAV: {exc}") from None
        self.sample_rate_hz = rate_hz
        return np.ascontiguousarray(pcm[:, 0])


class AudioPlayer(Protocol):
    """Plays PCM; blocking (the ``Speaker`` runs it in a thread) and stoppable from elsewhere."""

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: threading.Event) -> float:
        """Play until done or until ``stop`` is set; return the seconds of audio heard."""
        ...


class SoundDevicePlayer:
    """An output device through PortAudio (``device``: index or name; the default when None)."""

    block_s = 0.05
    """Audio written per step: how soon a stop takes effect."""

    def __init__(self, device: int | str | None = None) -> None:
        self.device = device

    def check(self, sample_rate_hz: int) -> None:
        """Raise ``SpeechError`` unless the device can play mono int16 at ``sample_rate_hz``."""
        problem = self.problem(sample_rate_hz)
        if problem is not None:
            raise SpeechError(
                f"cannot play speech ({problem}); connect a speaker, pick one with "
                "--output-device, or use --no-speak"
            )

    def problem(self, sample_rate_hz: int) -> str | None:
        """Why the device cannot play mono int16 at ``sample_rate_hz``; None when it can."""
        sd = _sounddevice()
        try:
            sd.check_output_settings(
                device=self.device, samplerate=sample_rate_hz, channels=1, dtype="int16"
            )
        except (sd.PortAudioError, ValueError) as exc:
            where = "no default output device" if self.device is None else repr(self.device)
            return f"{where}: {exc}"
        return None

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: threading.Event) -> float:
        """Play ``pcm`` and wait until it has left the speaker (or ``stop`` is set)."""
        sd = _sounddevice()
        try:
            stream = sd.OutputStream(
                device=self.device, samplerate=sample_rate_hz, channels=1, dtype="int16"
            )
        except (sd.PortAudioError, ValueError) as exc:
            where = "the default output device" if self.device is None else repr(self.device)
            raise SpeechError(f"cannot play through {where}: {exc}") from exc
        block = max(1, round(sample_rate_hz * self.block_s))
        written = 0
        try:
            with stream:
                while written < len(pcm) and not stop.is_set():
                    stream.write(pcm[written : written + block])
                    written += len(pcm[written : written + block])
                if stop.is_set():
                    stream.abort()
                    heard = max(0.0, written / sample_rate_hz - stream.latency)
                    return min(heard, len(pcm) / sample_rate_hz)
                # stop() returns once the buffered audio has been played.
                stream.stop()
        except sd.PortAudioError as exc:  # e.g. the device went away mid-sentence
            raise SpeechError(f"playing speech failed: {exc}") from None
        return written / sample_rate_hz


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:
        raise SpeechError(
            f"the PortAudio library was not found ({exc}): apt-get install libportaudio2 "
            "or brew install portaudio, or use --no-speak"
        ) from None
    return sounddevice


# --- the stage -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Clip:
    text: str
    pcm: np.ndarray
    sample_rate_hz: int


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
        self._texts: asyncio.Queue[str] = asyncio.Queue()
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
            # Cancelling the task left its thread playing: it stops within a block of ``_stop``.
            await asyncio.gather(self._playback, return_exceptions=True)

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
            self._playback = asyncio.ensure_future(
                asyncio.to_thread(self.player.play, clip.pcm, clip.sample_rate_hz, self._stop)
            )
            try:
                heard_s = await asyncio.shield(self._playback)
            except Exception as exc:
                self._fail(exc)
            else:
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
            words = clip.text.split()
            share = round(len(words) * heard_s / duration_s) if duration_s else 0
            heard = " ".join(words[:share])
        else:
            heard = clip.text
        if heard:
            self._heard.append(heard)
        if self.on_spoken:
            self.on_spoken(
                SpokenSentence(text=clip.text, duration_s=heard_s, interrupted=interrupted)
            )
