"""One ``/v1/realtime`` conversation: parsed client events in, server events out.

``RealtimeSession`` owns the input audio buffer, the server VAD (a ``VadSegmenter``) and a
``Dialogue``; it emits server event dicts through a ``send`` callback that never blocks (the
connection behind it has a bounded queue). At most one response runs at a time, as a named
task owned by the session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import soxr

from assistant import events as ev
from assistant.audio.io import AudioError, stream_resampler
from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.conversation.dialogue import Dialogue
from assistant.server.realtime.protocol import (
    ClientEvent,
    ConversationItemCreate,
    FunctionCallOutputItem,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    InputText,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    SessionState,
    SessionUpdate,
    TurnDetection,
    assistant_message_item,
    decode_pcm16,
    error_event,
    function_call_output_item,
    new_id,
    server_event,
    user_message_item,
)
from assistant.server.realtime.response import ResponseWriter, SendEvent

log = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
"""A manual commit needs at least this much audio (as OpenAI's server requires)."""

CANCEL_WAIT_S = 5.0
"""How long a cancelled response may take to wind down (one decode step, normally; a server
tool it started runs on) before it is ended with ``response.done`` all the same."""


class RealtimeSession:
    """The state machine of one connection over a ``Dialogue`` and a ``VadSegmenter``."""

    def __init__(
        self,
        dialogue: Dialogue,
        send: SendEvent,
        *,
        model_name: str,
        vad_settings: VadSettings | None = None,
        max_buffered_audio_s: float = 300.0,
        max_unanswered_audio_s: float = 300.0,
        max_unanswered_text_chars: int = 100_000,
    ) -> None:
        self.id = dialogue.conversation_id
        """The session id on the wire, which is also the dialogue's conversation id."""
        self._dialogue = dialogue
        self._send = send
        self._server_max_new_tokens = dialogue.settings.params.max_new_tokens
        """The server's reply limit, restored when a client unsets ``max_output_tokens``."""
        self._vad_base = vad_settings or VadSettings()
        self._max_buffered_samples = round(max_buffered_audio_s * ev.SAMPLE_RATE_HZ)
        self._max_unanswered_audio_s = max_unanswered_audio_s
        self._max_unanswered_text_chars = max_unanswered_text_chars
        self.state = SessionState(model=model_name, instructions=dialogue.settings.instructions)
        # Realtime clients ask for transcripts with audio.input.transcription (off by default).
        dialogue.settings.transcribe_user = self.state.transcribe
        dialogue.settings.transcription_language = self.state.transcription_language
        self._speech_unanswered = False
        """Whether server VAD committed an utterance while a response ran (answered next)."""
        self._resampler = stream_resampler(self.state.input_rate_hz)
        self._buffer: list[np.ndarray] = []
        self._buffered_samples = 0
        self._stream_samples = 0
        """16 kHz samples received since the session started (OpenAI's ``audio_*_ms`` clock)."""
        self._segmenter: asyncio.Future[VadSegmenter] | None = None
        """The server VAD (None with manual commits); Silero's is still being built in a thread."""
        self._segmenter_offset_ms = 0
        self._speech_item_id: str | None = None
        self._last_item_id: str | None = None
        self._item_ids: dict[str, str] = {}
        """Dialogue item id → wire item id (for transcripts)."""
        self._item_audio_s: dict[str, float] = {}
        self._response: ResponseWriter | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._suspended_turn: AsyncIterator[Any] | None = None
        """A turn paused at its client tool calls, resumed by the next ``response.create``."""
        self._client_outputs: set[str] = set()
        """The turn's client calls whose output item the client created itself."""
        self._closed = False
        self._configure_vad()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Send ``session.created``."""
        self._send(server_event("session.created", session=self._wire_state()))

    @property
    def responding(self) -> bool:
        """Whether a response is running."""
        return self._response_task is not None and not self._response_task.done()

    async def finish(self, grace_s: float) -> None:
        """Let a running response finish for up to ``grace_s``, then cancel it and close."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + grace_s
        task = self._response_task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=grace_s)
        await self.close(wait_s=max(0.0, deadline_s - loop.time()))

    async def close(self, wait_s: float = CANCEL_WAIT_S) -> None:
        """Cancel any running response and release the suspended turn (idempotent).

        A cancelled response gets ``wait_s`` to wind down; then it is ended (its
        ``response.done`` sent) even if a server tool it started still runs.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + wait_s
        if self._segmenter is not None:
            self._segmenter.cancel()
        task = self._response_task
        if task is not None and not task.done():
            self._cancel_response("server_shutdown")
            await asyncio.wait({task}, timeout=wait_s)
            task.cancel()
            await asyncio.wait({task})
        await self._drop_suspended_turn()
        await self._dialogue.aclose(max(0.0, deadline_s - loop.time()))

    def announce(self, announcement: ev.Announcement) -> None:
        """Something a tool says unprompted (a timer ran out), as a finished assistant message.

        It also joins the dialogue's history, so that "what was that?" can be answered.
        """
        self._dialogue.add_announcement(announcement)
        item_id = new_id("item")
        self._send(
            server_event(
                "conversation.item.created",
                previous_item_id=self._chain(item_id),
                item=assistant_message_item(item_id, announcement.text, "completed"),
            )
        )

    # --- client events ---------------------------------------------------------------------

    async def handle(self, event: ClientEvent) -> None:
        """Apply one client event; refusals raise ``ProtocolError`` (the session is unchanged)."""
        if self._closed:
            # The server is shutting down: nothing new may start after close().
            raise ProtocolError(
                "session_closed",
                "the session is closing: no more events are accepted",
                event_id=event.event_id,
            )
        if isinstance(event, InputAudioBufferAppend):
            await self._append(event)
        elif isinstance(event, SessionUpdate):
            self._update(event)
        elif isinstance(event, InputAudioBufferCommit):
            await self._commit_manually(event)
        elif isinstance(event, InputAudioBufferClear):
            self._clear()
        elif isinstance(event, ConversationItemCreate):
            await self._create_item(event)
        elif isinstance(event, ResponseCreate):
            self._create_response(event.event_id)
        elif isinstance(event, ResponseCancel):
            if not self.responding:
                raise ProtocolError(
                    "response_cancel_not_active",
                    "there is no active response to cancel",
                    event_id=event.event_id,
                )
            self._cancel_response("client_cancelled")

    def _update(self, event: SessionUpdate) -> None:
        before = self.state
        after = before.apply(event.session)
        settings = self._dialogue.settings
        if after.max_output_tokens is not None:
            # The server's own limit also bounds what the prompt leaves free for the reply.
            limit = min(after.max_output_tokens, self._server_max_new_tokens)
            after = dataclasses.replace(after, max_output_tokens=limit)
        # Everything that can fail comes before the first change: a refused update changes
        # nothing.
        params = dataclasses.replace(
            settings.params, max_new_tokens=after.max_output_tokens or self._server_max_new_tokens
        )
        resampler = self._resampler
        if after.input_rate_hz != before.input_rate_hz:
            resampler = stream_resampler(after.input_rate_hz)
        if after.tools != before.tools:
            try:
                self._dialogue.set_client_tools([dict(t) for t in after.tools])
            except ValueError as exc:
                raise ProtocolError(
                    "invalid_value", str(exc), event_id=event.event_id, param="session.tools"
                ) from None
        self.state = after
        if after.instructions != before.instructions:
            self._dialogue.set_instructions(after.instructions)
        settings.transcribe_user = after.transcribe
        settings.transcription_language = after.transcription_language
        settings.params = params
        self._resampler = resampler
        if _vad_overrides(after.turn_detection) != _vad_overrides(before.turn_detection):
            # Only a change the VAD itself sees rebuilds it (create_response does not).
            self._configure_vad()
        self._send(server_event("session.updated", session=self._wire_state()))

    def _wire_state(self) -> dict[str, Any]:
        base = self._vad_base
        defaults = {
            "threshold": base.threshold,
            "prefix_padding_ms": base.prefix_padding_ms,
            "silence_duration_ms": base.silence_duration_ms,
        }
        return self.state.to_wire(self.id, defaults)

    def _configure_vad(self) -> None:
        """(Re)build the server VAD for the session's turn detection (none: manual commits)."""
        self._segmenter = None
        self._segmenter_offset_ms = self._stream_ms
        self._speech_item_id = None
        overrides = _vad_overrides(self.state.turn_detection)
        if overrides is None:
            return
        build = functools.partial(VadSegmenter, self._vad_base, **overrides)
        if self._silero:
            # ~50 ms of CPU: built in a thread while the client gets its microphone ready.
            self._segmenter = asyncio.create_task(asyncio.to_thread(build), name=f"{self.id}:vad")
        else:
            self._segmenter = asyncio.get_running_loop().create_future()
            self._segmenter.set_result(build())

    @property
    def _silero(self) -> bool:
        """Whether the VAD is Silero's network, which runs in threads, off the event loop.

        webrtcvad costs microseconds per chunk and runs inline; Silero costs ~30 ms of CPU per
        second of audio, which on the event loop would delay every other client's events.
        """
        return self._vad_base.backend == "silero"

    async def _detect(self, segmenter: asyncio.Future[VadSegmenter], pcm: np.ndarray) -> list[Any]:
        """The VAD events for ``pcm``."""
        vad = await segmenter
        if self._silero:
            return await asyncio.to_thread(vad.process, pcm)
        return vad.process(pcm)

    @property
    def _stream_ms(self) -> int:
        return self._stream_samples * 1000 // ev.SAMPLE_RATE_HZ

    # --- audio -----------------------------------------------------------------------------

    def _to_16k(self, pcm: np.ndarray) -> np.ndarray:
        return pcm if self._resampler is None else self._resampler(pcm)

    async def _append(self, event: InputAudioBufferAppend) -> None:
        pcm = self._to_16k(decode_pcm16(event.audio, event_id=event.event_id))
        vad = self.state.turn_detection
        if vad is None or self._segmenter is None:
            if self._buffered_samples + len(pcm) > self._max_buffered_samples:
                limit_s = self._max_buffered_samples / ev.SAMPLE_RATE_HZ
                raise ProtocolError(
                    "input_audio_buffer_full",
                    f"the input audio buffer holds at most {limit_s:g} s: commit or clear it; "
                    "this chunk was not added",
                    event_id=event.event_id,
                    param="audio",
                )
            self._buffer.append(pcm)
            self._buffered_samples += len(pcm)
            self._stream_samples += len(pcm)
            return
        self._stream_samples += len(pcm)
        for vad_event in await self._detect(self._segmenter, pcm):
            await self._on_vad_event(vad_event, vad)

    async def _on_vad_event(self, vad_event: Any, vad: TurnDetection) -> None:
        offset = self._segmenter_offset_ms
        if isinstance(vad_event, ev.SpeechStarted):
            self._speech_item_id = new_id("item")
            self._send(
                server_event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=offset + vad_event.start_ms,
                    item_id=self._speech_item_id,
                )
            )
            if vad.interrupt_response and self.responding and self._dialogue.barge_in_allowed():
                self._cancel_response("turn_detected")
        elif isinstance(vad_event, ev.SpeechStopped):
            self._send(
                server_event(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=offset + vad_event.end_ms,
                    item_id=self._speech_item_id or new_id("item"),
                )
            )
        elif isinstance(vad_event, ev.Utterance):
            behind_s = (self._stream_ms - offset - vad_event.end_ms) / 1000
            item_id = self._speech_item_id or new_id("item")
            self._speech_item_id = None
            try:
                await self._commit(vad_event.pcm, item_id, time.monotonic() - behind_s)
            except ProtocolError as exc:
                # The audio went on after this utterance: its other events still count.
                self._send(error_event(exc))
                return
            if not vad.create_response:
                return
            if self.responding:
                self._speech_unanswered = True
            else:
                self._create_response(None)

    async def _commit_manually(self, event: InputAudioBufferCommit) -> None:
        item_id = new_id("item")
        if self._segmenter is not None:
            for vad_event in (await self._segmenter).flush():
                if isinstance(vad_event, ev.Utterance):
                    # Into the buffer, which a refused commit keeps (the VAD has let go of it).
                    self._buffer.append(vad_event.pcm)
                    self._buffered_samples += len(vad_event.pcm)
                    item_id = self._speech_item_id or item_id
                    self._speech_item_id = None
        samples = self._buffered_samples
        if samples * 1000 < MIN_COMMIT_MS * ev.SAMPLE_RATE_HZ:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, "
                f"have {samples * 1000 // ev.SAMPLE_RATE_HZ} ms",
                event_id=event.event_id,
            )
        await self._commit(np.concatenate(self._buffer), item_id, time.monotonic(), event.event_id)
        self._buffer, self._buffered_samples = [], 0

    def _clear(self) -> None:
        self._buffer, self._buffered_samples = [], 0
        if self._segmenter is not None and self._segmenter.done():
            self._segmenter.result().reset()
            self._segmenter_offset_ms = self._stream_ms
            self._speech_item_id = None
        self._send(server_event("input_audio_buffer.cleared"))

    async def _commit(
        self, pcm: np.ndarray, item_id: str, speech_end_s: float, event_id: str | None = None
    ) -> None:
        self._check_room(len(pcm) / ev.SAMPLE_RATE_HZ, 0, event_id)
        await self._drop_suspended_turn()
        self._add_user_item(
            item_id, audio=pcm, speech_end_s=speech_end_s, event_id=event_id, committed=True
        )

    def _check_room(self, audio_s: float, text_chars: int, event_id: str | None) -> None:
        """Refuse input that would take what waits for a response over its limits (the
        dialogue holds it all in memory, and the model reads it in one prompt)."""
        held_s = self._dialogue.unanswered_audio_s
        if audio_s and held_s + audio_s > self._max_unanswered_audio_s:
            raise ProtocolError(
                "unanswered_input_full",
                f"at most {self._max_unanswered_audio_s:g} s of audio may wait for a response "
                f"({held_s:.1f} s already do, this adds {audio_s:.1f} s): send response.create "
                "or wait for response.done; this input was not added",
                event_id=event_id,
            )
        held_chars = self._dialogue.unanswered_text_chars
        if text_chars and held_chars + text_chars > self._max_unanswered_text_chars:
            raise ProtocolError(
                "unanswered_input_full",
                f"at most {self._max_unanswered_text_chars} characters of text may wait for a "
                f"response ({held_chars} already do, this adds {text_chars}): send "
                "response.create or wait for response.done; this input was not added",
                event_id=event_id,
            )

    def _add_user_item(
        self,
        item_id: str,
        *,
        audio: np.ndarray | None = None,
        text: str | None = None,
        speech_end_s: float | None = None,
        event_id: str | None = None,
        committed: bool = False,
    ) -> None:
        """Hand the input to the dialogue, then announce the item (and the commit)."""
        try:
            dialogue_id = self._dialogue.add_user_turn(
                audio=audio, text=text, speech_end_s=speech_end_s
            )
        except (AudioError, ValueError) as exc:
            raise ProtocolError("invalid_value", str(exc), event_id=event_id) from None
        self._item_ids[dialogue_id] = item_id
        previous = self._chain(item_id)
        content: list[dict[str, Any]] = []
        if text is not None:
            content.append({"type": "input_text", "text": text})
        if audio is not None:
            self._item_audio_s[item_id] = len(audio) / ev.SAMPLE_RATE_HZ
            content.append({"type": "input_audio", "transcript": None})
        if committed:
            self._send(
                server_event(
                    "input_audio_buffer.committed", item_id=item_id, previous_item_id=previous
                )
            )
        self._send(
            server_event(
                "conversation.item.created",
                previous_item_id=previous,
                item=user_message_item(item_id, content),
            )
        )

    # --- conversation items ----------------------------------------------------------------

    def _chain(self, item_id: str) -> str | None:
        """Make ``item_id`` the latest conversation item; return the one before it."""
        previous, self._last_item_id = self._last_item_id, item_id
        return previous

    async def _create_item(self, event: ConversationItemCreate) -> None:
        item = event.item
        item_id = item.id or new_id("item")
        if isinstance(item, FunctionCallOutputItem):
            try:
                self._dialogue.provide_tool_output(item.call_id, item.output)
            except ValueError as exc:
                raise ProtocolError(
                    "invalid_value", str(exc), event_id=event.event_id, param="item.call_id"
                ) from None
            self._client_outputs.add(item.call_id)
            self._send(
                server_event(
                    "conversation.item.created",
                    previous_item_id=self._chain(item_id),
                    item=function_call_output_item(item_id, item.call_id, item.output),
                )
            )
            return
        texts = [part.text for part in item.content if isinstance(part, InputText)]
        clips = [
            self._decode_clip(part.audio, event.event_id, f"item.content.{i}.audio")
            for i, part in enumerate(item.content)
            if not isinstance(part, InputText)
        ]
        audio = np.concatenate(clips) if clips else None
        text = "\n".join(texts) if texts else None
        audio_s = 0.0 if audio is None else len(audio) / ev.SAMPLE_RATE_HZ
        self._check_room(audio_s, len(text or ""), event.event_id)
        await self._drop_suspended_turn()
        self._add_user_item(item_id, audio=audio, text=text, event_id=event.event_id)

    def _decode_clip(self, audio_b64: str, event_id: str | None, param: str) -> np.ndarray:
        pcm = decode_pcm16(audio_b64, event_id=event_id, param=param)
        rate = self.state.input_rate_hz
        if rate != ev.SAMPLE_RATE_HZ:
            pcm = np.asarray(soxr.resample(pcm, rate, ev.SAMPLE_RATE_HZ), dtype=np.int16)
        if not len(pcm):
            raise ProtocolError(
                "invalid_audio", "the audio is empty", event_id=event_id, param=param
            )
        return pcm

    # --- responses -------------------------------------------------------------------------

    def _create_response(self, event_id: str | None) -> None:
        if self._closed:
            # Reached after an await (a VAD utterance) that close() ran during.
            raise ProtocolError(
                "session_closed",
                "the session is closing: no new response starts",
                event_id=event_id,
            )
        if self.responding:
            raise ProtocolError(
                "conversation_already_has_active_response",
                "a response is already in progress: cancel it or wait for response.done",
                event_id=event_id,
            )
        if not self._dialogue.awaiting_response and self._suspended_turn is None:
            raise ProtocolError(
                "no_user_input",
                "nothing to respond to: add a user message or commit audio first",
                event_id=event_id,
            )
        self._speech_unanswered = False
        writer = ResponseWriter(self._send, self._chain)
        self._response = writer
        turn, self._suspended_turn = self._suspended_turn, None
        self._response_task = asyncio.create_task(
            self._run_response(writer, turn), name=f"{self.id}:{writer.response_id}"
        )
        self._response_task.add_done_callback(lambda _: self._answer_speech_heard_meanwhile())

    async def _run_response(self, writer: ResponseWriter, turn: AsyncIterator[Any] | None) -> None:
        """Run a new turn, or resume the suspended ``turn``, as the response ``writer``."""
        writer.created()
        if turn is None:
            if writer.cancel_reason is not None:
                # Cancelled before the dialogue took it up: its input waits for the next one.
                writer.ensure_done()
                return
            turn = aiter(self._dialogue.respond())
            self._client_outputs.clear()
        try:
            async for event in turn:
                if isinstance(event, ev.UserTranscript):
                    self._send_transcript(event)
                elif isinstance(event, ev.ClientToolRequested):
                    if not writer.made_call(event.call.id):
                        # Its round's calls came out in an earlier response, which the first
                        # of them ended.
                        continue
                    # The OpenAI flow: the response ends here with every call of the round
                    # (all already in its output); the client runs them, sends a
                    # function_call_output for each (one sent early counts too), then
                    # response.create resumes this turn.
                    self._suspended_turn = turn
                    writer.done_waiting_for_client()
                    return
                elif isinstance(event, ev.ToolResult) and event.call_id in self._client_outputs:
                    continue  # the client created that output item itself
                else:
                    writer.handle(event)
        except Exception:
            log.exception("response %s failed", writer.response_id)
            writer.failed("server_error", "the response failed; see the server log")
        finally:
            writer.ensure_done()

    def _answer_speech_heard_meanwhile(self) -> None:
        """An utterance committed while a response ran (no barge-in) gets its own response."""
        vad = self.state.turn_detection
        if (
            self._closed
            or self.responding
            or self._suspended_turn is not None
            or not self._speech_unanswered
            or vad is None
            or not vad.create_response
        ):
            return
        self._create_response(None)

    def _send_transcript(self, event: ev.UserTranscript) -> None:
        item_id = self._item_ids.get(event.item_id, event.item_id)
        self._send(
            server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=event.text,
                usage={"type": "duration", "seconds": self._item_audio_s.get(item_id, 0.0)},
            )
        )

    def _cancel_response(self, reason: str) -> None:
        """Stop the running response now, without waiting for it: the session keeps handling
        client events while it winds down; its ``response.done`` follows, within
        ``CANCEL_WAIT_S`` even when a server tool it started runs longer."""
        writer, task = self._response, self._response_task
        if writer is None or task is None or task.done() or writer.cancel_reason is not None:
            return
        writer.cancel_reason = reason
        # Every delta already went out to the client, so the reply keeps all text sent.
        self._dialogue.stop()
        deadline = asyncio.get_running_loop().call_later(
            CANCEL_WAIT_S, self._end_stuck_response, writer, task
        )
        task.add_done_callback(lambda _: deadline.cancel())

    def _end_stuck_response(self, writer: ResponseWriter, task: asyncio.Task[None]) -> None:
        """A cancelled response still waits for a server tool: end it for the client now (the
        tool's result still joins the history when it arrives)."""
        log.info(
            "response %s: a started tool still runs %g s after the cancel; ending the response",
            writer.response_id,
            CANCEL_WAIT_S,
        )
        task.cancel()

    async def _drop_suspended_turn(self) -> None:
        """New user input while a client tool is pending abandons that tool call."""
        turn, self._suspended_turn = self._suspended_turn, None
        if turn is None:
            return
        self._dialogue.stop()
        # respond() is typed as an iterator but is an async generator: close it now rather
        # than at garbage collection.
        close = getattr(turn, "aclose", None)
        if close is not None:
            await close()


def _vad_overrides(vad: TurnDetection | None) -> dict[str, Any] | None:
    """The client's VAD settings that differ from the server's (None: manual commits)."""
    if vad is None:
        return None
    return {
        k: v
        for k, v in (
            ("threshold", vad.threshold),
            ("prefix_padding_ms", vad.prefix_padding_ms),
            ("silence_duration_ms", vad.silence_duration_ms),
        )
        if v is not None
    }
