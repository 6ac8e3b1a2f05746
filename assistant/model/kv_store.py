"""What the model thread keeps between turns: KV caches per conversation, embeddings per clip.

Both live in one least-recently-used store under a byte budget. Evicting a conversation only
costs its next turn a full prefill; evicting a clip only costs a re-encode if it comes back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from assistant.model.prompting import AUDIO_TOKEN_ID, EncodedPrompt


@dataclass(eq=False)
class Conversation:
    """A conversation's KV cache and the sequence it holds, one key per cached position."""

    keys: list[Hashable]
    cache: Any
    bytes: int


def sequence_keys(prompt: EncodedPrompt) -> list[Hashable]:
    """Per-position identity of a prompt: the token id, or the clip's content hash for audio.

    Two prompts that agree on a prefix of keys have identical embeddings on that prefix: an audio
    run starts at the same position in both, so its rows line up.
    """
    keys: list[Hashable] = []
    clips = iter(prompt.clips)
    clip_key: bytes = b""
    previous = None
    for token in prompt.tokens:
        if token == AUDIO_TOKEN_ID:
            if previous != AUDIO_TOKEN_ID:  # each clip is one contiguous run of [AUDIO]
                clip_key = next(clips).key
            keys.append(clip_key)
        else:
            keys.append(token)
        previous = token
    return keys


def clip_token_counts(prompt: EncodedPrompt) -> list[int]:
    """``[AUDIO]`` tokens of each clip, in order (as in ``sequence_keys``: one run per clip)."""
    counts: list[int] = []
    previous = None
    for token in prompt.tokens:
        if token == AUDIO_TOKEN_ID:
            if previous != AUDIO_TOKEN_ID:
                counts.append(0)
            counts[-1] += 1
        previous = token
    return counts


def common_prefix(a: Sequence[Hashable], b: Sequence[Hashable], limit: int) -> int:
    """Length of the longest common prefix of ``a`` and ``b``, at most ``limit``."""
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def cache_bytes(cache: Any) -> int:
    """Memory held by a transformers KV cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def cache_capacity(cache: Any) -> int | None:
    """Positions a static KV cache can hold; None for a cache that grows as needed.

    transformers has named this differently across 5.x releases, so every spelling is tried.
    """
    if not getattr(cache, "layers", True):
        return None  # a dynamic cache before its first update
    for name in ("get_max_length", "get_max_cache_shape"):
        method = getattr(cache, name, None)
        if callable(method):
            value = method()
            return int(value) if value is not None and value > 0 else None
    value = getattr(cache, "max_cache_len", None)
    return int(value) if value else None


class CacheStore:
    """LRU store of conversation caches and clip embeddings within ``budget_bytes``."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, Hashable], tuple[Any, int]] = OrderedDict()
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        """Bytes held now."""
        return sum(size for _, size in self._entries.values())

    def _get(self, key: tuple[str, Hashable]) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def clip(self, key: bytes) -> torch.Tensor | None:
        """Embeddings of a clip, or None."""
        value: torch.Tensor | None = self._get(("clip", key))
        return value

    def put_clip(self, key: bytes, embeddings: torch.Tensor) -> None:
        """Keep a clip's embeddings."""
        size = embeddings.numel() * embeddings.element_size()
        self._entries[("clip", key)] = (embeddings, size)

    def conversation(self, conversation_id: str) -> Conversation | None:
        """A conversation's cache, or None."""
        value: Conversation | None = self._get(("conversation", conversation_id))
        return value

    def put_conversation(self, conversation_id: str, conversation: Conversation) -> None:
        """Keep (or replace) a conversation's cache."""
        key = ("conversation", conversation_id)
        self._entries[key] = (conversation, conversation.bytes)
        self._entries.move_to_end(key)

    def drop_conversation(self, conversation_id: str) -> None:
        """Forget a conversation's cache."""
        self._entries.pop(("conversation", conversation_id), None)

    def enforce_budget(self) -> None:
        """Evict least-recently-used entries until the store fits its budget.

        An entry larger than the whole budget goes first: keeping it would evict everything
        else and still not fit.
        """
        for key, (_, size) in list(self._entries.items()):
            if size > self.budget_bytes:
                del self._entries[key]
                self.evictions += 1
        used = self.used_bytes
        while used > self.budget_bytes and self._entries:
            _, (_, size) = self._entries.popitem(last=False)
            used -= size
            self.evictions += 1
