"""Make the tiny random model "say" a chosen reply through the real ``generate()`` loop.

``ForcedTokens`` is a transformers logits processor: at each decode step it leaves only the next
token of a target sequence (then ``</s>``) possible, so everything downstream (streaming,
detokenization, tool-call parsing, stopping) runs for real. ``reply_tokens`` encodes a reply
exactly as the model would write it, through mistral-common.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from transformers import LogitsProcessor

from assistant.testing.tiny_model import EOS_ID

if TYPE_CHECKING:
    import torch
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer


class ForcedTokens(LogitsProcessor):
    """Force row ``i`` of a batch to generate ``sequences[i]``, then ``</s>`` forever.

    The first call marks the prompt length, so use a fresh instance per ``generate`` call.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], eos_id: int = EOS_ID) -> None:
        self.sequences = [list(s) for s in sequences]
        self.eos_id = eos_id
        self._start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Mask every logit but the forced token of each row."""
        if self._start is None:
            self._start = input_ids.shape[1]
        step = input_ids.shape[1] - self._start
        forced = scores.new_full(scores.shape, float("-inf"))
        for row in range(scores.shape[0]):
            seq = self.sequences[row % len(self.sequences)]
            token = seq[step] if step < len(seq) else self.eos_id
            forced[row, token] = 0.0
        return forced


def reply_tokens(
    tokenizer: MistralTokenizer,
    text: str | None = None,
    tool_calls: Sequence[dict[str, Any]] = (),
) -> list[int]:
    """The tokens a model writes for ``text`` and/or ``tool_calls``, ending with ``</s>``.

    ``tool_calls`` items are ``{"name": ..., "arguments": {...}, "id": optional}``. Text before
    tool calls is encoded as plain text followed by the tool-call tokens, as the models write it.
    """
    from mistral_common.protocol.instruct.messages import AssistantMessage
    from mistral_common.protocol.instruct.tool_calls import FunctionCall, ToolCall

    instruct: Any = tokenizer.instruct_tokenizer  # every version >= v7 encodes assistant turns
    if not tool_calls:
        return list(
            instruct.encode_assistant_message(
                AssistantMessage(content=text or ""), is_before_last_user_message=False
            )
        )
    calls = [
        ToolCall(
            id=call.get("id") or "null",
            function=FunctionCall(name=call["name"], arguments=call.get("arguments", {})),
        )
        for call in tool_calls
    ]
    call_tokens = list(
        instruct.encode_assistant_message(
            AssistantMessage(tool_calls=calls), is_before_last_user_message=False
        )
    )
    prefix = instruct.tokenizer.encode(text, bos=False, eos=False) if text else []
    return [*prefix, *call_tokens]


class ScriptedReplies:
    """A queue of forced replies, one consumed per generation.

    Pass ``scripted.logits_processors`` to ``ModelWorker(logits_processor_factory=...)``; each
    ``generate`` call then produces the next reply in the script. When the script runs out the
    model generates freely.
    """

    def __init__(self, replies: Sequence[Sequence[int]] = ()) -> None:
        self._replies: deque[list[int]] = deque(list(r) for r in replies)

    def add(self, tokens: Sequence[int]) -> None:
        """Append one reply to the script."""
        self._replies.append(list(tokens))

    def __len__(self) -> int:
        return len(self._replies)

    def logits_processors(self, batch_size: int = 1) -> list[Any]:
        """Processors for one ``generate`` call over ``batch_size`` rows."""
        if not self._replies:
            return []
        rows = [self._replies.popleft() for _ in range(min(batch_size, len(self._replies)))]
        return [ForcedTokens(rows)]
