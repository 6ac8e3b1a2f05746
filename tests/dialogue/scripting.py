"""Scripted replies for the tiny model, routed by request kind (chat or transcription)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

from assistant.testing.forced import ForcedTokens, reply_tokens

TRANSCRIBE_ID = 34
"""A transcription prompt ends with ``[TRANSCRIBE]``; a chat prompt never does."""


class Script:
    """Forced replies for the tiny model, routed by request kind.

    Chat generations take the next scripted reply (or ``default_reply``), transcriptions the
    next scripted transcript (or ``default_transcript``), whatever order the model thread
    serves them in. Every chat prompt is kept, so tests can read what the model was shown.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chat: deque[list[int]] = deque()
        self.transcripts: deque[list[int]] = deque()
        self.prompts: list[list[int]] = []
        self.transcriptions = 0
        self.default_reply = "OK."
        self.default_transcript = "hello"

    def reset(self) -> None:
        """Forget everything scripted and seen."""
        self.chat.clear()
        self.transcripts.clear()
        self.prompts.clear()
        self.transcriptions = 0

    def reply(self, text: str | None = None, tool_calls: Sequence[dict[str, Any]] = ()) -> None:
        """Queue the next chat reply: text and/or tool calls."""
        self.chat.append(reply_tokens(self.tokenizer, text, tool_calls))

    def transcript(self, text: str) -> None:
        """Queue the next transcription's text."""
        self.transcripts.append(reply_tokens(self.tokenizer, text))

    def prompt_text(self, index: int = -1) -> str:
        """Chat prompt ``index`` decoded with its special tokens."""
        tekken = self.tokenizer.instruct_tokenizer.tokenizer
        return str(tekken.decode(self.prompts[index], special_token_policy=SpecialTokenPolicy.KEEP))

    def next_for(self, prompt: list[int]) -> list[int]:
        """The tokens to force for a request whose prompt is ``prompt`` (model thread)."""
        if prompt[-1] == TRANSCRIBE_ID:
            self.transcriptions += 1
            if self.transcripts:
                return self.transcripts.popleft()
            return reply_tokens(self.tokenizer, self.default_transcript)
        self.prompts.append(prompt)
        if self.chat:
            return self.chat.popleft()
        return reply_tokens(self.tokenizer, self.default_reply)

    def logits_processors(self, batch_size: int = 1) -> list[Any]:
        """The worker's ``logits_processor_factory``."""
        return [_Routed(self)]


class _Routed(ForcedTokens):
    """Chooses each row's forced reply from its prompt on the first decode step."""

    def __init__(self, script: Script) -> None:
        super().__init__([[]])
        self.script = script

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._start is None:
            self.sequences = [self.script.next_for(row) for row in input_ids.tolist()]
        return super().__call__(input_ids, scores)
