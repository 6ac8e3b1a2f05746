"""Preemptive turns: the first model call of a reply, started before the user has surely finished.

At the first silent frame after speech (``SpeechEndLikely``) the front-end hands the dialogue
the utterance that will be committed if the user stays silent. The dialogue builds the prompt
the turn would have on a copy of its history and asks the model for the reply at once, as a
speculative request. Nothing of it is observable: the stream's events wait unread in the stream
(no text reaches anyone, no tool starts, no transcript is asked for) and the history is not
touched. When the turn is committed, its first model call takes the speculation if it asked for
exactly the same thing (same messages, so the same samples, the same tools and sampling) and
reads the events that waited; otherwise, or if the user spoke on, the speculation is cancelled
and leaves nothing behind but a KV cache that serves the next request of the conversation.

A speculation that has begun a tool call (``[TOOL_CALLS]``, nothing malformed so far;
``Speculator.acts_on``) says the model took the utterance for a complete command: front-ends with
``vad.eager_silence_ms`` then end the turn early instead of waiting for the whole hangover (the
eager end of turn).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from assistant.config import GenerationParams
from assistant.model.backend import ModelBackend, ResponseStream

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Speculation:
    """One speculative first model call and what it asked for."""

    messages: list[Any]
    tools: list[Any]
    params: GenerationParams
    stream: ResponseStream
    started_s: float
    heard: object = None
    """What it answers, as the front-end handed it over (the VAD's announced utterance)."""

    def asked_for(self, messages: Sequence[Any], tools: Sequence[Any], params: Any) -> bool:
        """Whether a request for ``messages``, ``tools`` and ``params`` is this one's twin."""
        return (
            self.params == params
            and list(self.tools) == list(tools)
            and (list(self.messages) == list(messages))
        )


@dataclass
class SpeculationStats:
    """How the speculations of one dialogue ended."""

    started: int = 0
    adopted: int = 0
    discarded: int = 0


class Speculator:
    """Holds a dialogue's speculation (at most one at a time): starts, adopts, discards it."""

    def __init__(self, worker: ModelBackend, conversation_id: str) -> None:
        self.worker = worker
        self.conversation_id = conversation_id
        self.stats = SpeculationStats()
        self._current: Speculation | None = None

    @property
    def pending(self) -> bool:
        """Whether a speculation waits to be adopted or discarded."""
        return self._current is not None

    def acts_on(self, heard: object) -> bool:
        """Whether the pending speculation was started for ``heard`` (the very object) and has
        begun a tool call, writing nothing malformed so far: the model took that utterance for
        a complete command (an eager end of turn may follow). Its arguments may still be on
        their way: the decision is the sign. A speculation for other speech (an earlier turn's,
        not adopted yet) never acts on this one."""
        current = self._current
        if current is None or heard is None or current.heard is not heard:
            return False
        stream = current.stream
        return stream.call_begun and stream.malformed_calls_seen == 0

    def start(
        self, messages: list[Any], tools: list[Any], params: GenerationParams, heard: object = None
    ) -> None:
        """Ask the model for the reply to ``messages`` speculatively (any older one discarded);
        ``heard``: the input it answers, for ``acts_on``."""
        self.discard()
        stream = self.worker.respond(
            messages,
            tools=tools or None,
            params=params,
            conversation_id=self.conversation_id,
            speculative=True,
        )
        self._current = Speculation(messages, tools, params, stream, time.monotonic(), heard)
        self.stats.started += 1

    def take(
        self, messages: Sequence[Any], tools: Sequence[Any], params: GenerationParams
    ) -> ResponseStream | None:
        """The speculation's stream, adopted, if it asked for exactly this; else None (and the
        speculation, if any, is discarded)."""
        current = self._current
        if current is None:
            return None
        if not current.asked_for(messages, tools, params):
            log.debug("%s: the committed turn differs from the speculation", self.conversation_id)
            self.discard()
            return None
        self._current = None
        current.stream.adopt()
        self.stats.adopted += 1
        return current.stream

    def discard(self) -> bool:
        """Cancel the speculation (more speech came, or the turn went another way); False if
        there was none."""
        current, self._current = self._current, None
        if current is None:
            return False
        current.stream.cancel()
        self.stats.discarded += 1
        return True
