"""One Wyoming connection: events in, answers out.

Requests (as Home Assistant sends them, one per connection):

- ``describe`` -> ``info``, at once, whatever else runs.
- ``transcribe`` (optional) + ``audio-start`` / ``audio-chunk``... / ``audio-stop`` ->
  ``transcript``. With end-of-speech detection the transcript is sent as soon as the command is
  complete, while the client may still be streaming; later audio is read and dropped.
- ``transcript`` (text, ``context.conversation_id``) -> ``handled`` or ``not-handled``.
- ``synthesize`` -> ``audio-start``, ``audio-chunk``..., ``audio-stop``; the streaming form
  ``synthesize-start`` / ``synthesize-chunk``... / ``synthesize-stop`` -> the same audio events,
  sentence by sentence as the text arrives, then ``synthesize-stopped``. A ``synthesize`` inside
  a stream is the client's compatibility copy of the whole text and is not spoken.

A malformed event, or one out of order, gets an ``error`` event and is dropped; the connection
goes on. A request that fails (transcription, turn or synthesis) gets an ``error`` and the
connection is closed, so the client does not wait for an answer that will not come. Bytes that
are not Wyoming events get an ``error`` and end the connection. Unknown event types are ignored,
as Wyoming servers do. Nothing a client does can stop the server or another connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from wyoming.asr import Transcript
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.handle import Handled, NotHandled
from wyoming.ping import Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import SynthesizeStopped

from assistant.server.wyoming.asr import Command, CommandListener
from assistant.server.wyoming.framing import FrameError, FrameLimits, read_event
from assistant.server.wyoming.protocol import (
    PcmConverter,
    PcmFormat,
    RefusedEvent,
    language_code,
    text_field,
)
from assistant.server.wyoming.service import WyomingService
from assistant.server.wyoming.speech import AudioOut
from assistant.speech.errors import SpeechError
from assistant.speech.sentences import SentenceSplitter

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0


class _AudioStream:
    """An open ``audio-start`` ... ``audio-stop`` of a transcription request."""

    def __init__(self, fmt: PcmFormat, listener: CommandListener, language: str | None) -> None:
        self.format = fmt
        self.convert = PcmConverter(fmt)
        self.listener = listener
        self.language = language


class _SpeechStream:
    """An open ``synthesize-start`` ... ``synthesize-stop``."""

    def __init__(self, out: AudioOut) -> None:
        self.out = out
        self.splitter = SentenceSplitter()
        self.chars = 0


class WyomingHandler(AsyncEventHandler):
    """Serves one client connection (see the module docstring for the requests)."""

    def __init__(
        self,
        service: WyomingService,
        limits: FrameLimits,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.limits = limits
        self._language: str | None = None
        self._sensitivity: object = None
        self._audio: _AudioStream | None = None
        self._speech: _SpeechStream | None = None
        self._job: asyncio.Task[None] | None = None
        self._closing = False
        self._last_event_s = 0.0

    # --- the connection --------------------------------------------------------------------

    async def run(self) -> None:
        """Read events until the client leaves, idles out, breaks framing or a request fails."""
        loop = asyncio.get_running_loop()
        self._last_event_s = loop.time()
        watchdog = asyncio.create_task(self._watch_idle(), name="wyoming-idle")
        try:
            while not self._closing:
                try:
                    event = await read_event(self.reader, self.limits)
                except FrameError as exc:
                    await self._send_error("invalid_event", str(exc))
                    break
                if event is None:
                    break
                self._last_event_s = loop.time()
                if not await self._dispatch(event):
                    break
        finally:
            watchdog.cancel()
            # A client that only half-closed still reads: its answer is finished and sent (a
            # turn's tool calls and history stand either way). Shutdown cancels the task.
            await self._end_job()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def handle_event(self, event: Event) -> bool:
        """One event; False ends the connection (``RefusedEvent`` for a refused one)."""
        kind = event.type
        if kind == "describe":
            await self.write_event(self.service.info_event)
        elif kind == "ping":
            await self.write_event(Pong(text=event.data.get("text")).event())
        elif kind == "transcribe":
            self._on_transcribe(event.data)
        elif kind == "audio-start":
            await self._on_audio_start(event.data)
        elif kind == "audio-chunk":
            self._on_audio_chunk(event)
        elif kind == "audio-stop":
            await self._on_audio_stop()
        elif kind == "transcript":
            await self._on_transcript(event.data)
        elif kind == "synthesize":
            await self._on_synthesize(event.data)
        elif kind == "synthesize-start":
            self._on_synthesize_start(event.data)
        elif kind == "synthesize-chunk":
            await self._on_synthesize_chunk(event.data)
        elif kind == "synthesize-stop":
            await self._on_synthesize_stop()
        else:
            log.debug("ignoring a %s event", kind)
        return True

    @property
    def job(self) -> asyncio.Task[None] | None:
        """The request running for this connection (a transcription or a turn), if any."""
        return self._job

    async def write_event(self, event: Event) -> None:
        """Send one event; a client that has gone raises ``ConnectionError``."""
        if self.writer.is_closing():
            raise ConnectionResetError("the client has gone")
        await async_write_event(event, self.writer)

    async def _dispatch(self, event: Event) -> bool:
        try:
            return await self.handle_event(event)
        except RefusedEvent as exc:
            await self._send_error(exc.code, exc.text)
            return not exc.fatal
        except ConnectionError:
            return False
        except SpeechError as exc:
            await self._send_error("synthesis_failed", str(exc))
            return False
        except Exception:
            log.exception("handling a %s event failed", event.type)
            failed = f"the server failed on {event.type}; see its log"
            await self._send_error("server_error", failed)
            return False

    async def _send_error(self, code: str, text: str) -> None:
        log.info("wyoming client error %s: %s", code, text)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.write_event(Error(text=text, code=code).event())

    async def _watch_idle(self) -> None:
        """Close a connection that sends nothing while nothing runs for it."""
        loop = asyncio.get_running_loop()
        limit_s = self.service.settings.idle_timeout_s
        while True:
            await asyncio.sleep(min(WATCH_INTERVAL_S, limit_s))
            busy = self._job is not None and not self._job.done()
            if not busy and loop.time() - self._last_event_s >= limit_s:
                log.info("closing an idle Wyoming connection (%g s)", limit_s)
                await self.stop()
                return

    # --- jobs: work that outlasts the event that started it -------------------------------

    def _start_job(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` while events keep being read; a previous job finishes first."""
        previous = self._job

        async def in_turn() -> None:
            try:
                if previous is not None:
                    await asyncio.gather(previous, return_exceptions=True)
            except asyncio.CancelledError:
                coro.close()  # never started: close it rather than leave it un-awaited
                raise
            await self._guarded(coro)

        self._job = asyncio.create_task(in_turn(), name=name)

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except RefusedEvent as exc:
            await self._send_error(exc.code, exc.text)
            await self._fail()
        except ConnectionError:
            await self._fail()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("a Wyoming request failed")
            await self._send_error("request_failed", f"{type(exc).__name__}: {exc}")
            await self._fail()

    async def _fail(self) -> None:
        self._closing = True
        await self.stop()

    async def _end_job(self) -> None:
        if self._job is not None:
            await asyncio.gather(self._job, return_exceptions=True)

    # --- speech to text --------------------------------------------------------------------

    def _on_transcribe(self, data: dict[str, Any]) -> None:
        if self._audio is not None:
            raise RefusedEvent("invalid_sequence", "transcribe during an audio stream")
        self._language = language_code(data.get("language"))
        self._sensitivity = data.get("vad_sensitivity")

    async def _on_audio_start(self, data: dict[str, Any]) -> None:
        if self._audio is not None:
            raise RefusedEvent("invalid_sequence", "audio-start inside an audio stream")
        fmt = PcmFormat.from_event(data, "audio-start")
        listener = await self.service.listener(self._sensitivity)
        self._audio = _AudioStream(fmt, listener, self._language)
        self._language, self._sensitivity = None, None

    def _on_audio_chunk(self, event: Event) -> None:
        stream = self._audio
        if stream is None:
            raise RefusedEvent("invalid_sequence", "audio-chunk without audio-start")
        if stream.listener.command is not None:
            return  # answered already: the client streams on until it hears (or ends)
        fmt = PcmFormat.from_event(event.data, "audio-chunk")
        if fmt != stream.format:
            raise RefusedEvent(
                "invalid_audio",
                f"audio-chunk in {fmt.describe()} inside a stream of {stream.format.describe()}",
            )
        command = stream.listener.feed(stream.convert(event.payload or b""))
        if command is not None:
            self._answer_soon(command, stream.language)

    async def _on_audio_stop(self) -> None:
        stream = self._audio
        if stream is None:
            raise RefusedEvent("invalid_sequence", "audio-stop without audio-start")
        self._audio = None
        if stream.listener.command is None:
            self._answer_soon(stream.listener.stop(), stream.language)

    def _answer_soon(self, command: Command, language: str | None) -> None:
        log.debug("command complete (%s), transcribing", command.reason)
        self._start_job(self._answer(command, language), "wyoming-transcribe")

    async def _answer(self, command: Command, language: str | None) -> None:
        if command.audio is None or not len(command.audio):
            await self.write_event(Transcript(text="", language=language).event())
            return
        result = await self.service.transcribe(command.audio, language)
        log.info("transcript (%s): %s", command.reason, result.text)
        await self.write_event(
            Transcript(text=result.text, language=result.language or language).event()
        )

    # --- conversation ----------------------------------------------------------------------

    async def _on_transcript(self, data: dict[str, Any]) -> None:
        text = text_field(data, "transcript", self.service.settings.max_text_chars).strip()
        if not text:
            raise RefusedEvent("empty_text", "transcript: there is no text to answer", fatal=True)
        context = data.get("context")
        context = context if isinstance(context, dict) else {}
        conversation_id = context.get("conversation_id")
        if conversation_id is not None and not isinstance(conversation_id, str):
            raise RefusedEvent("invalid_event", "context.conversation_id must be a string")
        self._start_job(self._handle(conversation_id, text), "wyoming-turn")

    async def _handle(self, conversation_id: str | None, text: str) -> None:
        outcome = await self.service.turn(conversation_id, text)
        context = {"conversation_id": outcome.conversation_id}
        answer = Handled if outcome.handled else NotHandled
        await self.write_event(answer(text=outcome.text, context=context).event())

    # --- text to speech --------------------------------------------------------------------

    async def _on_synthesize(self, data: dict[str, Any]) -> None:
        if self._speech is not None:
            return  # the whole text again, for clients that do not stream: already spoken
        text = text_field(data, "synthesize", self.service.settings.max_text_chars)
        out = self._audio_out(data.get("voice"))
        splitter = SentenceSplitter()
        for sentence in [*splitter.feed(text), *splitter.flush()]:
            await out.say(sentence)
        await out.finish()

    def _on_synthesize_start(self, data: dict[str, Any]) -> None:
        if self._speech is not None:
            raise RefusedEvent("invalid_sequence", "synthesize-start inside a speech stream")
        self._speech = _SpeechStream(self._audio_out(data.get("voice")))

    async def _on_synthesize_chunk(self, data: dict[str, Any]) -> None:
        stream = self._speech
        if stream is None:
            raise RefusedEvent("invalid_sequence", "synthesize-chunk without synthesize-start")
        text = text_field(data, "synthesize-chunk", self.service.settings.max_text_chars)
        stream.chars += len(text)
        if stream.chars > self.service.settings.max_text_chars:
            raise RefusedEvent(
                "text_too_long",
                f"the speech stream is over {self.service.settings.max_text_chars} characters",
                fatal=True,
            )
        for sentence in stream.splitter.feed(text):
            await stream.out.say(sentence)

    async def _on_synthesize_stop(self) -> None:
        stream = self._speech
        if stream is None:
            raise RefusedEvent("invalid_sequence", "synthesize-stop without synthesize-start")
        self._speech = None
        for sentence in stream.splitter.flush():
            await stream.out.say(sentence)
        await stream.out.finish()
        await self.write_event(SynthesizeStopped().event())

    def _audio_out(self, voice: Any) -> AudioOut:
        return AudioOut(self.service.voices.pick(voice), self.write_event)
