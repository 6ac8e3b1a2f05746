"""Transcripts of what the user said: each clip also goes through transcription mode.

They never delay a reply: the dialogue starts them once the model thread has finished the
response's first generation, so they run while its tools do, and nothing waits for them (not
``TurnDone`` either): each is reported on its own as it ends. A confirmation answer is the
exception: its words decide what happens, so it is transcribed first. A failed transcription is
logged and reported as ``UserTranscriptFailed``; it never breaks the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from assistant.conversation.turn import ResponseState, UserInput
from assistant.events import TranscriptEvent, UserTranscript, UserTranscriptFailed
from assistant.model.backend import ModelBackend

log = logging.getLogger(__name__)


class UserTranscripts:
    """Transcribes the user clips of responses and reports each to ``report`` as it ends."""

    def __init__(
        self,
        worker: ModelBackend,
        conversation_id: str,
        report: Callable[[TranscriptEvent], None],
    ) -> None:
        self.worker = worker
        self.conversation_id = conversation_id
        self._report = report

    def start(
        self, r: ResponseState, *, enabled: bool, language: str | None = None
    ) -> asyncio.Task[None]:
        """Transcribe the response's clips that have none yet (nothing when not ``enabled``),
        in ``language`` when given."""
        return asyncio.create_task(
            self._all(r, enabled, language), name=f"transcripts-{self.conversation_id}"
        )

    async def answer_text(self, r: ResponseState, language: str | None = None) -> str:
        """Everything the user said or typed in the response's inputs (clips transcribed now)."""
        texts = []
        for entry in r.inputs:
            if entry.samples is not None:
                await self._one(entry, language)
                texts.append(entry.item.transcript or "")
            if entry.text:
                texts.append(entry.text)
        return " ".join(texts).strip()

    async def _all(self, r: ResponseState, enabled: bool, language: str | None) -> None:
        if enabled:
            await asyncio.gather(*(self._one(entry, language) for entry in r.inputs))

    async def _one(self, entry: UserInput, language: str | None) -> None:
        if entry.samples is None or entry.item.transcript is not None:
            return
        try:
            transcription = await self.worker.transcribe(entry.samples, language)
        except Exception as exc:  # a missing transcript must never break the conversation
            log.warning("transcription of %s failed: %s", entry.item.item_id, exc)
            self._report(UserTranscriptFailed(entry.item.item_id, str(exc)))
            return
        entry.item.transcript = transcription.text
        self._report(UserTranscript(entry.item.item_id, transcription.text, transcription.language))
