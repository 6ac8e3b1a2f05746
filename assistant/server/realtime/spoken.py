"""A session's spoken replies: its voice, each spoken response's audio, and truncation.

``SpokenReplies`` is the session's side of audio output (``audio_out.py`` produces it): it
turns ``session.update``'s voice and speed into a synthesizer (a named voice says a word
first, so an unknown one is refused with the update), builds the ``ResponseSpeech`` of each
spoken response, and applies ``conversation.item.truncate``: the item keeps the audio the
client played, and the dialogue's history the words heard in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from assistant.config import SpeechSettings
from assistant.conversation.dialogue import Dialogue
from assistant.server.realtime.audio_out import ResponseSpeech, SendEvent, SessionVoice
from assistant.server.realtime.protocol import (
    ConversationItemTruncate,
    ProtocolError,
    server_event,
)
from assistant.server.realtime.responses import Responses
from assistant.server.realtime.session_state import SessionState
from assistant.speech.errors import SpeechError
from assistant.speech.synthesis import Synthesizer

log = logging.getLogger(__name__)

VOICE_HINT = (
    "voices: OpenAI's names (spoken by the server's voice) or an installed espeak-ng voice "
    "(espeak-ng --voices lists them)"
)


class SpokenReplies:
    """The voice of one session and what it needs to speak and truncate its responses."""

    def __init__(
        self,
        settings: SpeechSettings,
        name: str,
        *,
        unavailable: str | None,
        lead_s: float,
        send: SendEvent,
        responses: Responses,
        dialogue: Dialogue,
    ) -> None:
        self.voice = SessionVoice(settings, name, unavailable)
        self._lead_s = lead_s
        self._send = send
        self._responses = responses
        self._dialogue = dialogue
        self._name = name

    async def prepare(
        self, before: SessionState, after: SessionState, event_id: str | None
    ) -> Synthesizer | None:
        """The synthesizer an update asks for, to ``use`` once the whole update is accepted
        (None: no change); ``ProtocolError`` for an unknown voice, or for speech asked of a
        server that cannot speak."""
        try:
            if after.speak and not before.speak:
                self.voice.check_available()
            if (after.engine_voice, after.speed) == (before.engine_voice, before.speed):
                return None
            if after.engine_voice is None and self.voice.unavailable is not None:
                return None  # nothing to speak with; asking to speak is refused above
            return await self.voice.prepare(after.engine_voice, after.speed)
        except SpeechError as exc:
            param = "session.output_modalities"
            if after.engine_voice != before.engine_voice:
                param = "session.audio.output.voice"
            raise ProtocolError(
                "invalid_value", f"{param}: {exc} ({VOICE_HINT})", event_id=event_id, param=param
            ) from None

    def use(self, synthesizer: Synthesizer | None) -> None:
        """Speak with ``synthesizer`` from the next response on (None: keep the current one)."""
        if synthesizer is not None:
            self.voice.synthesizer = synthesizer

    def prefer_language(self, language: str | None) -> None:
        """The user speaks ``language``: the server's voice speaks it when a reply does not say."""
        self.voice.prefer_language(language)

    def speech_for(
        self, state: SessionState, event_id: str | None
    ) -> Callable[[str], ResponseSpeech]:
        """What builds the audio output of a spoken response (from its response id)."""
        try:
            self.voice.check_available()
        except SpeechError as exc:
            raise ProtocolError(
                "invalid_value",
                f"response.output_modalities: {exc}",
                event_id=event_id,
                param="response.output_modalities",
            ) from None
        voice, rate_hz, lead_s = self.voice, state.output_rate_hz, self._lead_s

        def speech(response_id: str) -> ResponseSpeech:
            return ResponseSpeech(
                voice, self._send, response_id=response_id, rate_hz=rate_hz, lead_s=lead_s
            )

        return speech

    def truncate(self, event: ConversationItemTruncate) -> None:
        """Cut a spoken item to the audio the client played; the history keeps its words."""
        if event.content_index != 0:
            raise ProtocolError(
                "invalid_value",
                "content_index must be 0: an assistant message holds one audio part",
                event_id=event.event_id,
                param="content_index",
            )
        speech = self._responses.spoken_item(event.item_id)
        if speech is None:
            raise ProtocolError(
                "item_not_found",
                f"no spoken assistant message {event.item_id!r} in the latest response: only "
                "the newest response's audio can be truncated",
                event_id=event.event_id,
                param="item_id",
            )
        if self._responses.running and not self._responses.cancelled:
            raise ProtocolError(
                "response_in_progress",
                "the response is still being spoken: cancel it (response.cancel) before "
                "truncating its audio",
                event_id=event.event_id,
                param="item_id",
            )
        try:
            heard = speech.truncate(event.audio_end_ms)
        except ValueError as exc:
            raise ProtocolError(
                "invalid_value", str(exc), event_id=event.event_id, param="audio_end_ms"
            ) from None
        if not self._dialogue.cut_reply(speech.text_before + heard):
            log.info("%s: truncating %s left the history as it was", self._name, event.item_id)
        self._send(
            server_event(
                "conversation.item.truncated",
                item_id=event.item_id,
                content_index=0,
                audio_end_ms=event.audio_end_ms,
            )
        )

    def close(self) -> None:
        """Let the synthesis thread go (it ends after a synthesis under way)."""
        self.voice.close()
