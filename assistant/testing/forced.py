"""Make the tiny random model "say" a chosen reply through the real ``generate()`` loop.

``ForcedTokens`` is a transformers logits processor: at each decode step it leaves only the next
token of a target sequence (then ``</s>``) possible, so everything downstream (streaming,
detokenization, tool-call parsing, stopping) runs for real. ``reply_tokens`` encodes a reply
exactly as the model would write it, through mistral-common. ``ScriptedReplies`` is the one
script of replies and transcripts that tests, benchmarks and ``listen --forced-replies`` use.

A forced-replies file (``listen --forced-replies FILE.json``, for tests and demos on the tiny
random model) holds the same script::

    {
      "transcripts": ["What time is it?"],
      "replies": [
        {"tool_calls": [{"name": "get_time", "arguments": {}}]},
        {"text": "It is a quarter past ten."}
      ]
    }
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import LogitsProcessor

from assistant.testing.tiny_model import EOS_ID, TRANSCRIBE_ID

if TYPE_CHECKING:
    import torch

    from assistant.config import ModelSettings
    from assistant.model.backend import ModelBackend
    from assistant.model.prompting import Tokenizer


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
    tokenizer: Tokenizer,
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


HOLD_LIMIT_S = 30.0
"""A held reply that nobody releases fails (as an error event) instead of hanging the test."""


class ForcedScriptError(ValueError):
    """A forced-replies file is unreadable or not shaped as documented."""


@dataclass(frozen=True)
class _Reply:
    """One scripted generation: raw tokens, or text and tool calls encoded when it is served."""

    tokens: tuple[int, ...] | None = None
    text: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    hold_step: int | None = None
    """Generation pauses before this token until ``gate`` is set."""
    gate: threading.Event | None = None


class ScriptedReplies:
    """What the tiny model is made to say, in order, whatever order its requests arrive in.

    A chat generation takes the next reply queued with ``say``; a transcription (its prompt
    ends with ``[TRANSCRIBE]``) the next transcript queued with ``hear``; ``add`` queues raw
    tokens for the next generation of either kind when its own queue is empty. With nothing
    queued, ``default_reply`` / ``default_transcript`` are said, or the model writes freely
    when they are None. Every prompt the model was shown is kept (decoded, special tokens
    included) in ``prompts`` and ``transcription_prompts``; ``served`` lists the kinds of
    request in the order the model thread took them.

    Pass ``script.logits_processors`` as the ``ModelWorker``'s ``logits_processor_factory``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer | None = None,
        *,
        default_reply: str | None = None,
        default_transcript: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        """Encodes ``say``/``hear`` text; may be set after construction (``bind``)."""
        self.default_reply = default_reply
        self.default_transcript = default_transcript
        self._chat: deque[_Reply] = deque()
        self._transcripts: deque[_Reply] = deque()
        self._any: deque[_Reply] = deque()
        self.prompts: list[str] = []
        self.transcription_prompts: list[str] = []
        self.served: list[str] = []

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedReplies:
        """Read and check a forced-replies file (``ForcedScriptError`` saying what is wrong)."""
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
        script = cls()
        for text in transcripts:
            script.hear(text)
        for reply in replies:
            script.say(reply.get("text"), reply.get("tool_calls", ()))
        return script

    def bind(self, tokenizer: Tokenizer) -> None:
        """Use ``tokenizer`` (known once the model has loaded) to encode the script."""
        self.tokenizer = tokenizer

    def say(self, text: str | None = None, tool_calls: Sequence[dict[str, Any]] = ()) -> None:
        """Queue the next chat reply: text and/or tool calls (``{"name", "arguments", "id"}``)."""
        self._chat.append(_Reply(text=text, tool_calls=tuple(tool_calls)))

    def hear(self, text: str) -> None:
        """Queue the next transcription's text."""
        self._transcripts.append(_Reply(text=text))

    def add(self, tokens: Sequence[int]) -> None:
        """Queue raw tokens for the next generation of either kind."""
        self._any.append(_Reply(tokens=tuple(tokens)))

    def held_reply(self, tokens: Sequence[int], after_tokens: int) -> threading.Event:
        """Queue a chat reply of raw ``tokens`` whose generation stops after ``after_tokens`` of
        them were streamed, until the returned event is set (the model thread waits there)."""
        gate = threading.Event()
        self._chat.append(_Reply(tokens=tuple(tokens), hold_step=after_tokens, gate=gate))
        return gate

    def reset(self) -> None:
        """Forget everything queued and seen (held replies are let go)."""
        for reply in self._chat:
            if reply.gate is not None:
                reply.gate.set()
        for queue in (self._chat, self._transcripts, self._any):
            queue.clear()
        self.prompts.clear()
        self.transcription_prompts.clear()
        self.served.clear()

    def __len__(self) -> int:
        return len(self._chat) + len(self._transcripts) + len(self._any)

    def logits_processors(self, batch_size: int = 1) -> list[Any]:
        """Processors for one ``generate`` call (the worker's ``logits_processor_factory``)."""
        if not len(self) and self.default_reply is None and self.default_transcript is None:
            return []
        return [_Routed(self)]

    def next_for(self, prompt: list[int]) -> _Reply | None:
        """The reply to force for a request whose prompt is ``prompt`` (on the model thread)."""
        transcription = bool(prompt) and prompt[-1] == self._transcribe_id
        if self.tokenizer is not None:
            kept = self._decode(prompt)
            (self.transcription_prompts if transcription else self.prompts).append(kept)
        return self._next(transcription)

    def request_extras(self, kind: str) -> dict[str, Any]:
        """The remote worker's hook (``RemoteWorker(request_extras=...)``): the next reply of
        the request's kind (``chat`` or ``transcription``) as ``vllm_xargs.forced_tokens``, which
        ``assistant.testing.vllm_forced`` forces inside the vLLM server; nothing when nothing is
        scripted. Prompts are not recorded (the server builds them) and holds do not apply."""
        reply = self._next(kind == "transcription")
        if reply is None:
            return {}
        return {"vllm_xargs": {"forced_tokens": self.tokens_of(reply)}}

    def _next(self, transcription: bool) -> _Reply | None:
        self.served.append("transcription" if transcription else "chat")
        own = self._transcripts if transcription else self._chat
        if own:
            return own.popleft()
        if self._any:
            return self._any.popleft()
        default = self.default_transcript if transcription else self.default_reply
        return None if default is None else _Reply(text=default)

    def tokens_of(self, reply: _Reply) -> list[int]:
        """The tokens ``reply`` forces."""
        if reply.tokens is not None:
            return list(reply.tokens)
        if self.tokenizer is None:
            raise RuntimeError("ScriptedReplies needs a tokenizer to encode text: call bind()")
        return reply_tokens(self.tokenizer, reply.text, reply.tool_calls)

    @property
    def _transcribe_id(self) -> int:
        if self.tokenizer is None:
            return TRANSCRIBE_ID
        tekken: Any = self.tokenizer.instruct_tokenizer.tokenizer
        return int(tekken.get_special_token("[TRANSCRIBE]"))

    def _decode(self, tokens: list[int]) -> str:
        from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

        assert self.tokenizer is not None
        tekken: Any = self.tokenizer.instruct_tokenizer.tokenizer
        return str(tekken.decode(tokens, special_token_policy=SpecialTokenPolicy.KEEP))


def load_scripted(script: ScriptedReplies | None, settings: ModelSettings) -> ModelBackend:
    """The backend ``settings`` names (local weights or a server), its model made to say what
    ``script`` says (None: nothing forced); the script is bound to the tokenizer once the
    backend is open. Blocking; raises what ``open_backend`` raises."""
    from assistant.model.factory import open_backend

    worker = open_backend(
        settings,
        logits_processor_factory=script.logits_processors if script is not None else None,
        request_extras=script.request_extras if script is not None else None,
    )
    if script is not None:
        script.bind(worker.tokenizer)
    return worker


def _is_reply(reply: object) -> bool:
    if not isinstance(reply, dict) or not reply or set(reply) - {"text", "tool_calls"}:
        return False
    calls = reply.get("tool_calls", [])
    return isinstance(reply.get("text", ""), str) and (
        isinstance(calls, list)
        and all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls)
    )


class _Routed(LogitsProcessor):
    """Chooses each row's scripted reply from its prompt at the first step; free rows (nothing
    scripted for them) are left untouched."""

    def __init__(self, script: ScriptedReplies) -> None:
        self.script = script
        self._rows: list[tuple[list[int], _Reply] | None] | None = None
        self._start = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Leave only the scripted token possible in scripted rows."""
        if self._rows is None:
            self._start = input_ids.shape[1]
            self._rows = []
            for prompt in input_ids.tolist():
                reply = self.script.next_for(prompt)
                chosen = None if reply is None else (self.script.tokens_of(reply), reply)
                self._rows.append(chosen)
        step = input_ids.shape[1] - self._start
        forced = scores.clone()
        for row, chosen in enumerate(self._rows):
            if chosen is None:
                continue
            tokens, reply = chosen
            held = reply.gate is not None and reply.hold_step == step
            if held and reply.gate is not None and not reply.gate.wait(HOLD_LIMIT_S):
                raise TimeoutError(f"a held reply was not released within {HOLD_LIMIT_S:g} s")
            forced[row] = float("-inf")
            forced[row, tokens[step] if step < len(tokens) else EOS_ID] = 0.0
        return forced
