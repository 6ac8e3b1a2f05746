"""Scripted replies for the tiny model, routed by request kind (chat or transcription)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

from assistant.testing.forced import ForcedTokens, reply_tokens

TRANSCRIBE_ID = 34
"""A transcription prompt ends with ``[TRANSCRIBE]``; a chat prompt never does."""

HOLD_LIMIT_S = 30.0
"""A held reply that nobody releases fails (as an error event) instead of hanging the test."""


@dataclass(frozen=True)
class _Hold:
    """Pause a reply's generation before its token ``step`` until ``gate`` is set."""

    step: int
    gate: threading.Event


class Script:
    """Forced replies for the tiny model, routed by request kind.

    Chat generations take the next scripted reply (or ``default_reply``), transcriptions the
    next scripted transcript (or ``default_transcript``), whatever order the model thread
    serves them in. Every chat prompt is kept, so tests can read what the model was shown, and
    ``served`` lists the kinds of request in the order the model thread took them.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chat: deque[tuple[list[int], _Hold | None]] = deque()
        self.transcripts: deque[list[int]] = deque()
        self.prompts: list[list[int]] = []
        self.served: list[str] = []
        self.transcriptions = 0
        self.default_reply = "OK."
        self.default_transcript = "hello"

    def reset(self) -> None:
        """Forget everything scripted and seen (held replies are let go)."""
        for _, hold in self.chat:
            if hold is not None:
                hold.gate.set()
        self.chat.clear()
        self.transcripts.clear()
        self.prompts.clear()
        self.served.clear()
        self.transcriptions = 0

    def reply(self, text: str | None = None, tool_calls: Sequence[dict[str, Any]] = ()) -> None:
        """Queue the next chat reply: text and/or tool calls."""
        self.chat.append((reply_tokens(self.tokenizer, text, tool_calls), None))

    def held_reply(self, tokens: Sequence[int], after_tokens: int) -> threading.Event:
        """Queue a reply of raw ``tokens`` whose generation stops after ``after_tokens`` of
        them were streamed, until the returned event is set (the model thread waits there)."""
        gate = threading.Event()
        self.chat.append((list(tokens), _Hold(after_tokens, gate)))
        return gate

    def transcript(self, text: str) -> None:
        """Queue the next transcription's text."""
        self.transcripts.append(reply_tokens(self.tokenizer, text))

    def prompt_text(self, index: int = -1) -> str:
        """Chat prompt ``index`` decoded with its special tokens."""
        tekken = self.tokenizer.instruct_tokenizer.tokenizer
        return str(tekken.decode(self.prompts[index], special_token_policy=SpecialTokenPolicy.KEEP))

    def next_for(self, prompt: list[int]) -> tuple[list[int], _Hold | None]:
        """The tokens to force for a request whose prompt is ``prompt`` (model thread)."""
        if prompt[-1] == TRANSCRIBE_ID:
            self.served.append("transcription")
            self.transcriptions += 1
            if self.transcripts:
                return self.transcripts.popleft(), None
            return reply_tokens(self.tokenizer, self.default_transcript), None
        self.served.append("chat")
        self.prompts.append(prompt)
        if self.chat:
            return self.chat.popleft()
        return reply_tokens(self.tokenizer, self.default_reply), None

    def logits_processors(self, batch_size: int = 1) -> list[Any]:
        """The worker's ``logits_processor_factory``."""
        return [_Routed(self)]


class _Routed(ForcedTokens):
    """Chooses each row's forced reply from its prompt on the first decode step."""

    def __init__(self, script: Script) -> None:
        super().__init__([[]])
        self.script = script
        self.holds: list[_Hold | None] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._start is None:
            chosen = [self.script.next_for(row) for row in input_ids.tolist()]
            self.sequences = [tokens for tokens, _ in chosen]
            self.holds = [hold for _, hold in chosen]
        step = input_ids.shape[1] - (self._start or input_ids.shape[1])
        for hold in self.holds:
            if hold is not None and hold.step == step and not hold.gate.wait(HOLD_LIMIT_S):
                raise TimeoutError(f"a held reply was not released within {HOLD_LIMIT_S:g} s")
        return super().__call__(input_ids, scores)
