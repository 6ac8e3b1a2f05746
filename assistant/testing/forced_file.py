"""Forced replies read from a JSON file: a test aid for driving whole commands end to end.

``voxtral-assistant listen --forced-replies FILE.json`` (a hidden option, for tests and demos on
the tiny random model) makes the model say what the file says, through the real ``generate()``
loop::

    {
      "transcripts": ["What time is it?"],
      "replies": [
        {"tool_calls": [{"name": "get_time", "arguments": {}}]},
        {"text": "It is a quarter past ten."}
      ]
    }

Transcription requests (prompts that end with ``[TRANSCRIBE]``) take the next transcript, every
other generation the next reply, so the script does not depend on the order in which the
dialogue's concurrent requests reach the model. When a list runs out the model writes freely.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import LogitsProcessor

from assistant.testing.forced import reply_tokens

if TYPE_CHECKING:
    import torch
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer


class ForcedScriptError(ValueError):
    """The forced-replies file is unreadable or not shaped as documented."""


@dataclass
class ForcedScript:
    """Transcripts and replies to force, in order; build with ``from_file``."""

    transcripts: list[str] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    """Each ``{"text": ...}`` and/or ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``."""

    @classmethod
    def from_file(cls, path: str | Path) -> ForcedScript:
        """Read and check a forced-replies file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ForcedScriptError(f"cannot read forced replies {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ForcedScriptError(f"forced replies {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or set(data) - {"transcripts", "replies"}:
            raise ForcedScriptError(
                f"forced replies {path} must be an object with 'transcripts' and/or 'replies'"
            )
        transcripts = data.get("transcripts", [])
        replies = data.get("replies", [])
        if not isinstance(transcripts, list) or not all(isinstance(t, str) for t in transcripts):
            raise ForcedScriptError(f"forced replies {path}: 'transcripts' must list strings")
        if not isinstance(replies, list) or not all(_is_reply(r) for r in replies):
            raise ForcedScriptError(
                f"forced replies {path}: each reply needs 'text' (a string) and/or 'tool_calls' "
                "(a list of {'name': ..., 'arguments': {...}})"
            )
        return cls(transcripts, replies)

    def factory(self, tokenizer: MistralTokenizer) -> Callable[[int], list[Any]]:
        """A ``logits_processor_factory`` for ``ModelWorker`` that plays this script."""
        transcripts = deque(reply_tokens(tokenizer, text) for text in self.transcripts)
        replies = deque(
            reply_tokens(tokenizer, reply.get("text"), reply.get("tool_calls", ()))
            for reply in self.replies
        )
        tekken: Any = tokenizer.instruct_tokenizer.tokenizer
        transcribe_id = int(tekken.get_special_token("[TRANSCRIBE]"))
        eos_id = int(tekken.eos_id)

        def make(batch_size: int) -> list[Any]:
            return [_ByRequestKind(transcripts, replies, transcribe_id, eos_id)]

        return make


def _is_reply(reply: object) -> bool:
    if not isinstance(reply, dict) or not reply or set(reply) - {"text", "tool_calls"}:
        return False
    calls = reply.get("tool_calls", [])
    return isinstance(reply.get("text", ""), str) and (
        isinstance(calls, list)
        and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls)
    )


class _ByRequestKind(LogitsProcessor):
    """At the first step, picks each row's forced sequence by the kind of its prompt."""

    def __init__(
        self,
        transcripts: deque[list[int]],
        replies: deque[list[int]],
        transcribe_id: int,
        eos_id: int,
    ) -> None:
        self._queues = (transcripts, replies)
        self._transcribe_id = transcribe_id
        self._eos_id = eos_id
        self._rows: list[list[int] | None] | None = None
        self._start = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Leave only the scripted token possible in scripted rows; free rows are untouched."""
        if self._rows is None:
            self._start = input_ids.shape[1]
            self._rows = []
            for row in range(input_ids.shape[0]):
                transcription = int(input_ids[row, -1]) == self._transcribe_id
                queue = self._queues[0] if transcription else self._queues[1]
                self._rows.append(queue.popleft() if queue else None)
        step = input_ids.shape[1] - self._start
        forced = scores.clone()
        for row, sequence in enumerate(self._rows):
            if sequence is None:
                continue
            token = sequence[step] if step < len(sequence) else self._eos_id
            forced[row] = float("-inf")
            forced[row, token] = 0.0
        return forced
