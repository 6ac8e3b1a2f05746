"""What every Wyoming connection shares: the model, the tools, the voices and the conversations.

Connections are short (Home Assistant opens one per request); the state that outlives them —
the conversations behind ``context.conversation_id`` — lives here, bounded and expiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from wyoming.event import Event

from assistant import events as ev
from assistant.audio.vad import VadSegmenter
from assistant.config import DialogueSettings, GenerationParams, VadSettings, WyomingSettings
from assistant.conversation.dialogue import Dialogue
from assistant.server.wyoming.asr import CommandListener, command_vad_settings
from assistant.server.wyoming.conversations import Conversation, ConversationStore
from assistant.server.wyoming.info import server_info
from assistant.server.wyoming.speech import Voices

if TYPE_CHECKING:
    from assistant.model.backend import ModelBackend
    from assistant.tools import ToolRegistry

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 30.0
"""How often expired conversations are looked for (besides at every turn)."""


@dataclass(frozen=True)
class TurnOutcome:
    """One conversation turn's answer: handled (the reply) or not (what went wrong)."""

    handled: bool
    text: str
    conversation_id: str


class WyomingService:
    """The shared half of the Wyoming server; ``start()`` its housekeeping, ``aclose()`` it."""

    def __init__(
        self,
        worker: ModelBackend,
        *,
        tools: ToolRegistry | None,
        voices: Voices,
        settings: WyomingSettings,
        vad_settings: VadSettings,
        dialogue_settings: DialogueSettings,
        params: GenerationParams | None = None,
        model_name: str,
    ) -> None:
        self.worker = worker
        self.tools = tools
        self.voices = voices
        self.settings = settings
        self.vad_settings = vad_settings
        self.dialogue_settings = dialogue_settings
        self.params = params or GenerationParams()
        self.info_event: Event = server_info(
            model_name=model_name,
            languages=settings.languages,
            voices=voices.names,
            detects_end_of_speech=settings.detect_end_of_speech,
            has_tools=bool(tools and len(tools)),
        ).event()
        self.conversations: ConversationStore[Dialogue] = ConversationStore(
            settings.max_conversations, settings.conversation_idle_s
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the housekeeping tasks (conversation expiry; tool announcements)."""
        self._spawn(self._sweep(), "wyoming-conversation-expiry")
        if self.tools is not None:
            self._spawn(self._drain_announcements(self.tools), "wyoming-announcements")

    async def aclose(self) -> None:
        """Stop the housekeeping and release every conversation."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close(self.conversations.pop_all())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- speech to text --------------------------------------------------------------------

    async def listener(self, vad_sensitivity: object) -> CommandListener:
        """A listener for one spoken command (the VAD is built in a thread: Silero loads)."""
        s = self.settings
        segmenter = None
        if s.detect_end_of_speech:
            vad = command_vad_settings(
                self.vad_settings, s.silence_duration_ms, s.max_command_s, vad_sensitivity
            )
            segmenter = await asyncio.to_thread(VadSegmenter, vad)
        return CommandListener(
            segmenter, max_command_s=s.max_command_s, no_speech_timeout_s=s.no_speech_timeout_s
        )

    async def transcribe(self, audio: np.ndarray, language: str | None) -> ev.Transcription:
        """What was said (Voxtral's transcription mode); ``ModelError`` when it fails."""
        return await self.worker.transcribe(audio, language)

    # --- conversations ---------------------------------------------------------------------

    async def turn(self, conversation_id: str | None, text: str) -> TurnOutcome:
        """One conversation turn with the tools; the conversation continues under its id."""
        key = conversation_id or uuid.uuid4().hex
        conversation, gone = self.conversations.get(key, self._new_dialogue, time.monotonic())
        await self._close(gone)
        async with conversation.lock:
            outcome = await self._run_turn(conversation, text)
        conversation.last_used_s = time.monotonic()
        return dataclasses.replace(outcome, conversation_id=key)

    def _new_dialogue(self) -> Dialogue:
        # A typed turn has no audio to transcribe; the conversation id on the model side is
        # ours (the client's may be any string), so caches never collide.
        settings = self.dialogue_settings.model_copy(update={"transcribe_user": False})
        return Dialogue(
            self.worker,
            self.tools,
            settings,
            params=self.params,
            conversation_id=f"wyoming_{uuid.uuid4().hex[:16]}",
        )

    async def _run_turn(self, conversation: Conversation[Dialogue], text: str) -> TurnOutcome:
        dialogue = conversation.dialogue
        dialogue.add_user_turn(text=text, speech_end_s=time.monotonic())
        error: ev.ErrorEvent | None = None
        done: ev.TurnDone | None = None
        async for event in dialogue.respond():
            if isinstance(event, ev.ErrorEvent):
                error = event
            elif isinstance(event, ev.TurnDone):
                done = event
        conversation.turns += 1
        if done is None or done.finish_reason == "error" or (error and not done.text):
            reason = error.message if error else "the turn ended without an answer"
            log.warning("%s: turn failed: %s", dialogue.conversation_id, reason)
            return TurnOutcome(False, f"Sorry, I could not answer that: {reason}", "")
        return TurnOutcome(True, done.text, "")

    async def _close(self, conversations: list[Conversation[Dialogue]]) -> None:
        for conversation in conversations:
            log.debug("forgetting conversation %s", conversation.key)
            await conversation.dialogue.aclose(wait_s=1.0)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            await self._close(self.conversations.expired(time.monotonic()))

    async def _drain_announcements(self, tools: ToolRegistry) -> None:
        """Wyoming has no way to speak up later: what tools announce is logged, not lost."""
        while True:
            announcement = await tools.announcements.get()
            log.warning(
                "announcement from %s cannot be spoken over Wyoming: %s",
                announcement.source,
                announcement.text,
            )
