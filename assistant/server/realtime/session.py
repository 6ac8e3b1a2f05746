"""One ``/v1/realtime`` conversation: parsed client events in, server events out.

``RealtimeSession`` applies client events to its parts — the input audio buffer
(``InputAudioBuffer``), the server VAD (``ServerVad``), the session configuration
(``SessionState``), the conversation items, and the responses (``Responses``: at most one at a
time, as a named task) over a ``Dialogue`` — and emits server event dicts through a ``send``
callback that never blocks (the connection behind it has a bounded queue).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import soxr

from assistant import events as ev
from assistant.audio.io import AudioError, stream_resampler
from assistant.config import ServerSettings, SpeechSettings, VadSettings
from assistant.conversation.dialogue import Dialogue
from assistant.server.realtime.input_buffer import InputAudioBuffer
from assistant.server.realtime.protocol import (
    ClientEvent,
    ConversationItemCreate,
    ConversationItemTruncate,
    FunctionCallOutputItem,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    InputText,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    assistant_message_item,
    decode_pcm16,
    error_event,
    function_call_output_item,
    new_id,
    server_event,
    user_message_item,
)
from assistant.server.realtime.response import SendEvent
from assistant.server.realtime.responses import Responses
from assistant.server.realtime.server_vad import ServerVad, vad_overrides
from assistant.server.realtime.session_state import SessionState, TurnDetection
from assistant.server.realtime.spoken import SpokenReplies

log = logging.getLogger(__name__)


class RealtimeSession:
    """The state machine of one connection over a ``Dialogue`` and a server VAD."""

    def __init__(
        self,
        dialogue: Dialogue,
        send: SendEvent,
        *,
        model_name: str,
        vad_settings: VadSettings | None = None,
        limits: ServerSettings | None = None,
        speech_settings: SpeechSettings | None = None,
        speech_unavailable: str | None = None,
    ) -> None:
        self.id = dialogue.conversation_id
        """The session id on the wire, which is also the dialogue's conversation id."""
        self._dialogue = dialogue
        self._send = send
        limits = limits or ServerSettings()
        self._server_max_new_tokens = dialogue.params.max_new_tokens
        """The server's reply limit, restored when a client unsets ``max_output_tokens``."""
        self._max_unanswered_audio_s = limits.max_unanswered_audio_s
        self._max_unanswered_text_chars = limits.max_unanswered_text_chars
        self.state = SessionState(model=model_name, instructions=dialogue.settings.instructions)
        # Realtime clients ask for transcripts with audio.input.transcription (off by default).
        dialogue.settings.transcribe_user = self.state.transcribe
        dialogue.settings.transcription_language = self.state.transcription_language
        self._audio = InputAudioBuffer(self.state.input_rate_hz, limits.max_buffered_audio_s)
        self._vad = ServerVad(vad_settings or VadSettings(), self.id)
        self._speech_unanswered = False
        """Whether server VAD committed an utterance while a response ran (answered next)."""
        self._last_item_id: str | None = None
        self._item_ids: dict[str, str] = {}
        """Dialogue item id → wire item id (for transcripts)."""
        self._item_audio_s: dict[str, float] = {}
        self._responses = Responses(
            self.id,
            dialogue,
            send,
            self._chain,
            on_done=self._answer_speech_heard_meanwhile,
            cancel_wait_s=limits.cancel_wait_s,
        )
        self._spoken = SpokenReplies(
            speech_settings or SpeechSettings(),
            self.id,
            unavailable=speech_unavailable,
            lead_s=limits.audio_lead_s,
            send=send,
            responses=self._responses,
            dialogue=dialogue,
        )
        self._closed = False
        dialogue.on_transcript = self._send_transcript
        self._vad.configure(vad_overrides(self.state.turn_detection), self._audio.stream_ms)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Send ``session.created``."""
        self._send(server_event("session.created", session=self._wire_state()))

    @property
    def responding(self) -> bool:
        """Whether a response is running."""
        return self._responses.running

    async def finish(self, grace_s: float) -> None:
        """Let a running response finish for up to ``grace_s``, then cancel it and close."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + grace_s
        await self._responses.finish(grace_s)
        await self.close(wait_s=max(0.0, deadline_s - loop.time()))

    async def close(self, wait_s: float | None = None) -> None:
        """Cancel any running response and release the suspended turn (idempotent).

        A cancelled response gets ``wait_s`` (default: the server's ``cancel_wait_s``) to wind
        down; then it is ended (its ``response.done`` sent) even if a server tool it started
        still runs.
        """
        if self._closed:
            return
        if wait_s is None:
            wait_s = self._responses.cancel_wait_s
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + wait_s
        self._vad.cancel()
        await self._responses.close(wait_s)
        self._spoken.close()
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
            await self._update(event)
        elif isinstance(event, InputAudioBufferCommit):
            await self._commit_manually(event)
        elif isinstance(event, InputAudioBufferClear):
            self._clear()
        elif isinstance(event, ConversationItemCreate):
            await self._create_item(event)
        elif isinstance(event, ConversationItemTruncate):
            self._spoken.truncate(event)
        elif isinstance(event, ResponseCreate):
            modalities = event.response.output_modalities if event.response else None
            speak = self.state.speak if modalities is None else modalities == ["audio"]
            self._create_response(event.event_id, speak)
        elif isinstance(event, ResponseCancel):
            if not self.responding:
                raise ProtocolError(
                    "response_cancel_not_active",
                    "there is no active response to cancel",
                    event_id=event.event_id,
                )
            self._responses.cancel("client_cancelled")

    # --- session configuration -------------------------------------------------------------

    async def _update(self, event: SessionUpdate) -> None:
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
            self._dialogue.params,
            max_new_tokens=after.max_output_tokens or self._server_max_new_tokens,
        )
        resampler = self._audio.resampler
        if after.input_rate_hz != before.input_rate_hz:
            resampler = stream_resampler(after.input_rate_hz)
        synthesizer = await self._spoken.prepare(before, after, event.event_id)
        if after.tools != before.tools:
            try:
                self._dialogue.set_client_tools([dict(t) for t in after.tools])
            except ValueError as exc:
                raise ProtocolError(
                    "invalid_value", str(exc), event_id=event.event_id, param="session.tools"
                ) from None
        self.state = after
        self._spoken.use(synthesizer)
        if after.instructions != before.instructions:
            self._dialogue.set_instructions(after.instructions)
        settings.transcribe_user = after.transcribe
        settings.transcription_language = after.transcription_language
        if after.transcription_language != before.transcription_language:
            self._spoken.prefer_language(after.transcription_language)
        self._dialogue.params = params
        self._audio.resampler = resampler
        overrides = vad_overrides(after.turn_detection)
        if overrides != vad_overrides(before.turn_detection):
            # Only a change the VAD itself sees rebuilds it (create_response does not); the
            # speech it was hearing, and any speculation on it, are gone.
            self._dialogue.discard_speculation()
            self._vad.configure(overrides, self._audio.stream_ms)
        self._send(server_event("session.updated", session=self._wire_state()))

    def _wire_state(self) -> dict[str, Any]:
        base = self._vad.base
        defaults = {
            "threshold": base.threshold,
            "prefix_padding_ms": base.prefix_padding_ms,
            "silence_duration_ms": base.silence_duration_ms,
        }
        return self.state.to_wire(self.id, defaults)

    # --- audio -----------------------------------------------------------------------------

    async def _append(self, event: InputAudioBufferAppend) -> None:
        pcm = self._audio.to_16k(decode_pcm16(event.audio, event_id=event.event_id))
        vad = self.state.turn_detection
        if vad is None or not self._vad.active:
            self._audio.hold(pcm, event.event_id)
            return
        self._audio.advance(len(pcm))
        for vad_event in await self._vad.detect(pcm):
            await self._on_vad_event(vad_event, vad)
        if self._dialogue.speculation_acts_on(self._vad.announced):
            # The preemptive reply to this speech holds a complete command: end the turn before
            # the hangover (with vad.eager_silence_ms, or semantic_vad).
            for vad_event in await self._vad.end_early():
                await self._on_vad_event(vad_event, vad)

    async def _on_vad_event(self, vad_event: Any, vad: TurnDetection) -> None:
        offset = self._vad.offset_ms
        if isinstance(vad_event, ev.SpeechStarted):
            self._vad.speech_item_id = new_id("item")
            self._send(
                server_event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=offset + vad_event.start_ms,
                    item_id=self._vad.speech_item_id,
                )
            )
            if vad.interrupt_response and self.responding and self._dialogue.barge_in_allowed():
                self._responses.cancel("turn_detected")
        elif isinstance(vad_event, ev.SpeechEndLikely):
            self._preempt(vad_event, vad)
        elif isinstance(vad_event, ev.SpeechResumed):
            self._dialogue.discard_speculation()
        elif isinstance(vad_event, ev.SpeechStopped):
            self._send(
                server_event(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=offset + vad_event.end_ms,
                    item_id=self._vad.speech_item_id or new_id("item"),
                )
            )
        elif isinstance(vad_event, ev.Utterance):
            behind_s = (self._audio.stream_ms - offset - vad_event.end_ms) / 1000
            item_id = self._vad.speech_item_id or new_id("item")
            self._vad.speech_item_id = None
            try:
                await self._commit(vad_event.pcm, item_id, time.monotonic() - behind_s)
            except ProtocolError as exc:
                # The audio went on after this utterance: its other events still count.
                self._dialogue.discard_speculation()
                self._send(error_event(exc))
                return
            if not vad.create_response:
                return
            if self.responding:
                self._speech_unanswered = True
            else:
                self._create_response(None)

    def _preempt(self, hint: ev.SpeechEndLikely, vad: TurnDetection) -> None:
        """Start answering the utterance the VAD announces, if it is to be answered at once."""
        if hint.utterance is None or not vad.create_response or self.responding:
            return
        if self._responses.suspended or self._closed:
            return  # the next commit abandons a client tool call: no response follows it
        self._dialogue.speculate(hint.utterance)

    async def _commit_manually(self, event: InputAudioBufferCommit) -> None:
        item_id = new_id("item")
        for vad_event in await self._vad.flush():
            if isinstance(vad_event, ev.Utterance):
                # Into the buffer, which a refused commit keeps (the VAD has let go of it).
                self._audio.put_back(vad_event.pcm)
                item_id = self._vad.speech_item_id or item_id
                self._vad.speech_item_id = None
        pcm = self._audio.committable(event.event_id)
        await self._commit(pcm, item_id, time.monotonic(), event.event_id)
        self._audio.clear()

    def _clear(self) -> None:
        self._dialogue.discard_speculation()
        self._audio.clear()
        self._vad.reset(self._audio.stream_ms)
        self._send(server_event("input_audio_buffer.cleared"))

    async def _commit(
        self, pcm: np.ndarray, item_id: str, speech_end_s: float, event_id: str | None = None
    ) -> None:
        self._check_room(len(pcm) / ev.SAMPLE_RATE_HZ, 0, event_id)
        await self._responses.drop_suspended_turn()
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
            self._responses.client_outputs.add(item.call_id)
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
        await self._responses.drop_suspended_turn()
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

    def _create_response(self, event_id: str | None, speak: bool | None = None) -> None:
        """Start a response, spoken when ``speak`` (None: as the session says)."""
        if self._closed:
            # Reached after an await (a VAD utterance) that close() ran during.
            raise ProtocolError(
                "session_closed",
                "the session is closing: no new response starts",
                event_id=event_id,
            )
        spoken = self.state.speak if speak is None else speak
        speech = self._spoken.speech_for(self.state, event_id) if spoken else None
        self._responses.create(event_id, speech)
        self._speech_unanswered = False

    def _answer_speech_heard_meanwhile(self) -> None:
        """An utterance committed while a response ran (no barge-in) gets its own response."""
        vad = self.state.turn_detection
        if (
            self._closed
            or self.responding
            or self._responses.suspended
            or not self._speech_unanswered
            or vad is None
            or not vad.create_response
        ):
            return
        self._create_response(None)

    def _send_transcript(self, event: ev.TranscriptEvent) -> None:
        item_id = self._item_ids.get(event.item_id, event.item_id)
        if isinstance(event, ev.UserTranscriptFailed):
            error = {"type": "transcription_error", "code": "transcription_failed"}
            self._send(
                server_event(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=item_id,
                    content_index=0,
                    error={**error, "message": event.message, "param": None},
                )
            )
            return
        self._spoken.prefer_language(event.language)
        self._send(
            server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=event.text,
                usage={"type": "duration", "seconds": self._item_audio_s.get(item_id, 0.0)},
            )
        )
