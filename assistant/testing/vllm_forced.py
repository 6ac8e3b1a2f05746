"""Make a vLLM server "say" a chosen reply, as ``forced.py`` does for the local worker.

Loaded INSIDE the vLLM server (``--logits-processors
assistant.testing.vllm_forced:ForcedReply``, with this repository on the server's
``PYTHONPATH``); it imports only torch and vLLM. A request that carries
``vllm_xargs={"forced_tokens": [...]}`` (the ids from ``forced.reply_tokens``) generates
exactly those tokens, then ``</s>``; every other request is left alone. vLLM's own sampler,
detokenizer, tool-call parser and streaming then run for real, so a tiny random model can
stream a tool call through ``--tool-call-parser mistral``. ``vllm_xargs={"step_delay_s": x}``
makes each decoding step of that request wait ``x`` seconds: a tiny model decodes thousands of
tokens a second, too fast for a test to stop a generation midway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

FORCED_TOKENS_ARG = "forced_tokens"
"""The ``vllm_xargs`` key of the token ids a request must generate."""

STEP_DELAY_ARG = "step_delay_s"
"""The ``vllm_xargs`` key of a wait per decoding step (seconds)."""

EOS_ID = 2


# vLLM lives in its own virtual environment, so mypy sees its base class as Any.
class ForcedReply(AdapterLogitsProcessor):  # type: ignore[misc]
    """Per request: leave only the next forced token possible, then ``</s>`` forever (and
    wait ``step_delay_s`` per step where asked)."""

    def is_argmax_invariant(self) -> bool:
        """Forcing changes the argmax, so greedy requests must run it too."""
        return False

    def new_req_logits_processor(
        self, params: Any
    ) -> Callable[[list[int], torch.Tensor], torch.Tensor] | None:
        """The forcing function of a request with ``forced_tokens``; None for the others."""
        extra = params.extra_args or {}
        forced = extra.get(FORCED_TOKENS_ARG)
        delay_s = float(extra.get(STEP_DELAY_ARG) or 0.0)
        if not forced and not delay_s:
            return None
        tokens = [int(t) for t in forced or ()]

        def force(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            if delay_s:
                time.sleep(delay_s)
            if not tokens:
                return logits
            step = len(output_ids)
            token = tokens[step] if step < len(tokens) else EOS_ID
            masked = torch.full_like(logits, float("-inf"))
            masked[token] = 0.0
            return masked

        return force
