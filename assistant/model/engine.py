"""Model work on the model thread: audio encoding, prefill with prefix reuse, ``generate``.

Only the model thread calls into an ``Engine``. A generation runs in two steps:

1. prefill everything but the last prompt token through the decoder, starting after the longest
   prefix that the conversation's KV cache already holds (audio positions compare by clip
   content, and audio embeddings come from the clip cache, so no clip is encoded twice);
2. ``model.generate`` on the full ids with that cache: it forwards the last prompt token and
   decodes, with the caller's logits processors, a per-step cancellation check and a streamer.

Several prompts without a reusable cache run as one left-padded batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessorList,
    StaticCache,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from assistant.model.guide import GuideProcessor, RowGuide
from assistant.model.kv_store import (
    CacheStore,
    Conversation,
    cache_bytes,
    cache_capacity,
    clip_token_counts,
    common_prefix,
    sequence_keys,
)
from assistant.model.prompting import AUDIO_TOKEN_ID, Clip, EncodedPrompt

log = logging.getLogger(__name__)

WINDOW_SAMPLES = 480_000
"""One 30 s encoder window at 16 kHz."""
WINDOW_FRAMES = 3000
"""Mel frames per window."""


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen (temperature 0 = greedy)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None

    @property
    def batch_key(self) -> tuple[float, float, int | None]:
        """Requests with equal keys can share one batched ``generate``."""
        if self.temperature <= 0:
            return (0.0, 1.0, None)
        return (self.temperature, self.top_p, self.seed)


@dataclass(eq=False)
class Job:
    """One prompt to generate for, with where its tokens go."""

    prompt: EncodedPrompt
    sampling: Sampling
    on_token: Callable[[int], None]
    """Called on the model thread with each generated token id."""
    cancelled: threading.Event
    conversation_id: str | None = None
    guide: RowGuide | None = None
    """Keeps a tool call this job writes valid for its tools (``assistant.model.guide``)."""
    generated: list[int] = field(default_factory=list)
    first_token_s: float | None = None
    """``time.monotonic()`` of the first generated token."""
    reused_tokens: int = 0
    """Prompt tokens that came from the conversation's cache (not prefilled again)."""
    error: Exception | None = None
    """Why this job's generation failed (the other jobs of the same ``run`` are unaffected)."""
    on_progress: Callable[[int, int], None] | None = None
    """Called on the model thread with (windows encoded, windows to encode) of its run."""
    adopted: threading.Event | None = None
    """Set for a speculative job (its input not confirmed yet) once its caller keeps the reply;
    ``cancelled`` is its discard. None: an ordinary job."""

    @property
    def speculative(self) -> bool:
        """Whether the job was started before its input was confirmed."""
        return self.adopted is not None


class _RowStop(StoppingCriteria):
    """Stops each row whose job was cancelled or reached its own token limit, every step.

    A batch decodes up to its largest ``max_new_tokens``; a row with a smaller limit must not
    run on with it.
    """

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        flags = [job.cancelled.is_set() or _at_limit(job) for job in self.jobs]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


def _at_limit(job: Job) -> bool:
    return len(job.generated) >= job.sampling.max_new_tokens


class _Fanout(BaseStreamer):
    """Hands each generated token of each row to its job, skipping the prompt and padding."""

    def __init__(self, jobs: Sequence[Job], eos_id: int) -> None:
        self.jobs = jobs
        self.eos_id = eos_id
        self._prompt_seen = False
        self._done = [False] * len(jobs)

    def put(self, value: torch.Tensor) -> None:
        """Called by ``generate``: first with the prompt, then with one token per row."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        now = time.monotonic()
        for row, token in enumerate(value.reshape(-1).tolist()):
            job = self.jobs[row]
            if self._done[row]:
                continue
            if job.first_token_s is None:
                job.first_token_s = now
            job.generated.append(token)
            if token == self.eos_id:
                self._done[row] = True
            else:
                job.on_token(token)
            if job.cancelled.is_set() or _at_limit(job):
                self._done[row] = True

    def end(self) -> None:
        """Nothing to flush: tokens were handed on as they came."""


@dataclass
class EngineStats:
    """Counters that tests and benchmarks read."""

    encoder_calls: int = 0
    encoded_clips: int = 0
    prefilled_tokens: int = 0
    reused_tokens: int = 0
    generate_calls: int = 0
    speculative_jobs: int = 0


_decoding = threading.local()


def decoding_jobs() -> Sequence[Job]:
    """The jobs of the ``generate`` call running on this thread, one per batch row.

    For logits processors that treat rows by their request (the test kit's scripted replies
    answer a speculative request without using up its reply).
    """
    jobs: Sequence[Job] = getattr(_decoding, "jobs", ())
    return jobs


class Engine:
    """Runs prompts on one model; every method must be called from the model thread."""

    def __init__(
        self,
        model: Any,
        feature_extractor: Any,
        *,
        eos_id: int,
        pad_id: int,
        cache_budget_bytes: int,
        prefix_reuse: bool = True,
        logits_processor_factory: Callable[[int], list[Any]] | None = None,
        static_cache_tokens: int | None = None,
        compile_config: Any = None,
        encoder_batch_windows: int = 16,
    ) -> None:
        self.model = model
        self.encoder_batch_windows = encoder_batch_windows
        self.feature_extractor = feature_extractor
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.prefix_reuse = prefix_reuse
        self.logits_processor_factory = logits_processor_factory
        self.static_cache_tokens = static_cache_tokens
        self.compile_config = compile_config
        self.store = CacheStore(cache_budget_bytes)
        self.stats = EngineStats()
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    # --- audio -------------------------------------------------------------------------------

    def encode_clips(
        self, clips: Sequence[Clip], progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Make sure every clip's embeddings are cached, encoding all new ones together.

        The windows go through the encoder ``encoder_batch_windows`` at a time, which bounds
        its memory for a long clip; ``progress(done, total)`` follows each call.
        """
        new: dict[bytes, Clip] = {}
        for clip in clips:
            if self.store.clip(clip.key) is None and clip.key not in new:
                new[clip.key] = clip
        if not new:
            return
        features = [self._features(clip) for clip in new.values()]
        windows = torch.cat(features)
        total, step = windows.shape[0], self.encoder_batch_windows
        parts = []
        with torch.inference_mode():
            for start in range(0, total, step):
                batch = windows[start : start + step].to(self.device, self.dtype)
                parts.append(self.model.get_audio_features(batch).pooler_output)
                self.stats.encoder_calls += 1
                if progress is not None:
                    progress(min(start + step, total), total)
        embeddings = torch.cat(parts)
        self.stats.encoded_clips += len(new)
        offset = 0
        tokens_per_window = embeddings.shape[0] // sum(f.shape[0] for f in features)
        for clip, feature in zip(new.values(), features, strict=True):
            rows = feature.shape[0] * tokens_per_window
            # A copy: a view would keep the whole batch's output alive, uncounted by the budget.
            self.store.put_clip(clip.key, embeddings[offset : offset + rows].clone())
            offset += rows

    def _features(self, clip: Clip) -> torch.Tensor:
        """Mel features of a clip, one ``(128, 3000)`` block per 30 s window."""
        out = self.feature_extractor(
            clip.samples,
            sampling_rate=16000,
            padding=True,
            truncation=False,
            pad_to_multiple_of=WINDOW_SAMPLES,
            return_tensors="pt",
        )["input_features"]
        bins = out.shape[1]
        features: torch.Tensor = out.reshape(bins, -1, WINDOW_FRAMES).transpose(0, 1)
        return features

    def _embed(self, prompt: EncodedPrompt, start: int, end: int) -> torch.Tensor:
        """Input embeddings of ``prompt.tokens[start:end]``, audio positions from the clip cache."""
        ids = torch.tensor(prompt.tokens[start:end], device=self.device)
        embeds: torch.Tensor = self.model.get_input_embeddings()(ids)
        audio_before = sum(1 for t in prompt.tokens[:start] if t == AUDIO_TOKEN_ID)
        audio_in = int((ids == AUDIO_TOKEN_ID).sum())
        if audio_in:
            rows = self._audio_rows(prompt, audio_before, audio_before + audio_in)
            mask = (ids == AUDIO_TOKEN_ID).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(mask, rows.to(embeds.dtype))
        return embeds

    def _audio_rows(self, prompt: EncodedPrompt, first: int, last: int) -> torch.Tensor:
        """Audio embedding rows ``first:last`` of the prompt's clips laid end to end."""
        parts, offset = [], 0
        for clip, tokens in zip(prompt.clips, clip_token_counts(prompt), strict=True):
            lo, hi = max(first, offset), min(last, offset + tokens)
            if lo < hi:
                rows = self.store.clip(clip.key)
                if rows is None:
                    raise RuntimeError("clip embeddings missing from the cache")
                if rows.shape[0] != tokens:
                    raise ValueError(
                        f"audio features and audio tokens do not match: {tokens} tokens, "
                        f"{rows.shape[0]} rows"
                    )
                parts.append(rows[lo - offset : hi - offset])
            offset += tokens
        return torch.cat(parts)

    def _clips_needed(self, prompt: EncodedPrompt, start: int) -> list[Clip]:
        """The prompt's clips with audio tokens at or after position ``start``."""
        audio_before = sum(1 for t in prompt.tokens[:start] if t == AUDIO_TOKEN_ID)
        needed, offset = [], 0
        for clip, tokens in zip(prompt.clips, clip_token_counts(prompt), strict=True):
            offset += tokens
            if offset > audio_before:
                needed.append(clip)
        return needed

    # --- generation --------------------------------------------------------------------------

    def run(self, jobs: Sequence[Job]) -> None:
        """Generate for ``jobs`` (batched where possible); results land in each job.

        A failure of one generation (one batched group or one reusing job) is kept in its
        jobs' ``error`` and does not stop the others; a failure of the shared audio encoding
        raises.
        """
        singles: list[tuple[Job, Conversation, list[Hashable], int]] = []
        fresh: list[Job] = []
        claimed: set[str] = set()
        for job in jobs:
            # A conversation's cache serves one job per run: a second request of the same
            # conversation in this batch is generated without it.
            found = None if job.conversation_id in claimed else self._reusable(job)
            if job.conversation_id is not None:
                claimed.add(job.conversation_id)
            if found is not None:
                singles.append((job, *found))
            else:
                fresh.append(job)
        needed = [clip for job in fresh for clip in job.prompt.clips]
        for job, _, _, reuse in singles:  # clips inside the reused prefix are not needed again
            needed += self._clips_needed(job.prompt, reuse)
        watchers = [job.on_progress for job in jobs if job.on_progress is not None]

        def progress(done: int, total: int) -> None:
            for watch in watchers:
                watch(done, total)

        self.encode_clips(needed, progress if watchers else None)
        groups: dict[tuple[Any, ...], list[Job]] = {}
        for job in fresh:
            groups.setdefault(job.sampling.batch_key, []).append(job)
        with torch.inference_mode():
            for group in groups.values():
                self._isolated(group, self._generate_fresh, group)
            for job, conversation, keys, reuse in singles:
                self._isolated([job], self._generate_reusing, job, conversation, keys, reuse)
        self.store.enforce_budget()

    def _isolated(self, jobs: list[Job], generate: Callable[..., None], *args: Any) -> None:
        try:
            generate(*args)
        except Exception as exc:  # reported per job by the worker; the others go on
            log.exception("generation failed")
            for job in jobs:
                job.error = exc
                if job.conversation_id is not None:
                    self.store.drop_conversation(job.conversation_id)

    def _new_cache(self, needed_tokens: int) -> Any:
        """A static cache when configured and large enough, else a dynamic one."""
        if self.static_cache_tokens is not None and needed_tokens <= self.static_cache_tokens:
            return StaticCache(config=self.model.config, max_cache_len=self.static_cache_tokens)
        return DynamicCache()

    def _reusable(self, job: Job) -> tuple[Conversation, list[Hashable], int] | None:
        """The job's conversation cache, the prompt's sequence keys, and how many prompt
        positions the cache holds already."""
        if not self.prefix_reuse or job.conversation_id is None:
            return None
        conversation = self.store.conversation(job.conversation_id)
        if conversation is None:
            return None
        capacity = cache_capacity(conversation.cache)
        needed = len(job.prompt.tokens) + job.sampling.max_new_tokens
        if capacity is not None and needed > capacity:
            return None  # a static cache too small for this turn: start over with a fresh one
        keys = sequence_keys(job.prompt)
        reuse = common_prefix(conversation.keys, keys, len(job.prompt.tokens) - 1)
        if reuse == 0:
            return None
        return conversation, keys, reuse

    def _generate_reusing(
        self, job: Job, conversation: Conversation, keys: list[Hashable], reuse: int
    ) -> None:
        length = len(job.prompt.tokens)
        cache = conversation.cache
        # The cache changes in place from here on: out of the store until it is consistent
        # again (``_remember``), so that a failure cannot leave stale keys over it.
        self.store.drop_conversation(job.conversation_id or "")
        surplus = cache.get_seq_length() - reuse
        if surplus > 0:
            cache.crop(-surplus)
        job.reused_tokens = reuse
        self.stats.reused_tokens += reuse
        if reuse < length - 1:
            embeds = self._embed(job.prompt, reuse, length - 1).unsqueeze(0)
            self.model.model.language_model(
                inputs_embeds=embeds,
                attention_mask=self._chunk_mask(reuse, length - 1 - reuse, cache),
                cache=cache,
                use_cache=True,
            )
            self.stats.prefilled_tokens += length - 1 - reuse
        ids = torch.tensor([job.prompt.tokens], device=self.device)
        self._decode([job], ids, None, cache)
        self._remember(job, keys, cache)

    def _chunk_mask(self, past: int, new: int, cache: Any) -> torch.Tensor | None:
        """The additive mask for prefilling ``new`` tokens after ``past`` cached ones (sdpa only).

        Left to itself, transformers builds a boolean mask that ``scaled_dot_product_attention``
        converts to an additive one in every layer; at turn 12 of a conversation (378 queries
        over 4,700 keys) that conversion cost more than the rest of the mask handling. Built
        once here, with the same 0 / -inf values, the attention output is bit-for-bit the same.
        Past keys are all visible, the new block is causal, and a static cache's unused slots
        are hidden.
        """
        if getattr(self.model.config.text_config, "_attn_implementation", None) != "sdpa":
            return None  # flash attention takes no 4D mask; eager builds its own
        keys = cache_capacity(cache) or past + new
        mask = torch.zeros((new, keys), dtype=self.dtype, device=self.device)
        blocked = torch.ones((new, new), dtype=torch.bool, device=self.device).triu(1)
        mask[:, past : past + new].masked_fill_(blocked, float("-inf"))
        mask[:, past + new :] = float("-inf")
        return mask[None, None]

    def _generate_fresh(self, jobs: list[Job]) -> None:
        lengths = [len(job.prompt.tokens) for job in jobs]
        width = max(lengths)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(jobs), width), dtype=torch.long, device=self.device)
        embeds = torch.zeros(
            (len(jobs), width - 1, self.model.config.text_config.hidden_size),
            dtype=self.dtype,
            device=self.device,
        )
        for row, (job, length) in enumerate(zip(jobs, lengths, strict=True)):
            ids[row, width - length :] = torch.tensor(job.prompt.tokens, device=self.device)
            mask[row, width - length :] = 1
            if length > 1:
                embeds[row, width - length :] = self._embed(job.prompt, 0, length - 1)
        cache = (
            self._new_cache(width + jobs[0].sampling.max_new_tokens)
            if len(jobs) == 1
            else DynamicCache()
        )
        if width > 1:
            prefix_mask = mask[:, : width - 1]
            positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
            self.model.model.language_model(
                inputs_embeds=embeds,
                attention_mask=prefix_mask if len(jobs) > 1 else None,
                position_ids=positions,
                cache=cache,
                use_cache=True,
            )
            self.stats.prefilled_tokens += sum(lengths) - len(jobs)
        self._decode(jobs, ids, mask if len(jobs) > 1 else None, cache)
        if len(jobs) == 1:
            self._remember(jobs[0], sequence_keys(jobs[0].prompt), cache)
        else:
            for row, job in enumerate(jobs):
                if job.conversation_id is not None and self.prefix_reuse:
                    row_cache = _row_cache(cache, row, width - lengths[row])
                    self._remember(job, sequence_keys(job.prompt), row_cache)

    def generation_config(self, jobs: Sequence[Job]) -> GenerationConfig:
        """What ``generate`` is told for ``jobs`` (which share their sampling settings).

        Every sampling field is set: transformers fills a None from the checkpoint's
        generation config and then its own defaults (top-k 50), so None does not mean "off".
        """
        sampling = jobs[0].sampling
        greedy = sampling.temperature <= 0
        return GenerationConfig(
            max_new_tokens=max(job.sampling.max_new_tokens for job in jobs),
            do_sample=not greedy,
            temperature=1.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=None if greedy else 0,  # 0: off (None would become 50 when sampling)
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            compile_config=self.compile_config,
            disable_compile=self.compile_config is None,
        )

    def _decode(
        self, jobs: list[Job], ids: torch.Tensor, mask: torch.Tensor | None, cache: Any
    ) -> None:
        sampling = jobs[0].sampling
        _decoding.jobs = tuple(jobs)
        try:
            processors: list[Any] = []
            if any(job.guide is not None for job in jobs):
                processors.append(GuideProcessor([job.guide for job in jobs]))
            if self.logits_processor_factory is not None:  # after the guide: forcing wins
                processors += self.logits_processor_factory(len(jobs))
            config = self.generation_config(jobs)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            self.stats.generate_calls += 1
            self.stats.speculative_jobs += sum(1 for job in jobs if job.speculative)
            self.model.generate(
                input_ids=ids,
                attention_mask=mask if mask is not None else torch.ones_like(ids),
                cache=cache,
                generation_config=config,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([_RowStop(jobs)]),
                streamer=_Fanout(jobs, self.eos_id),
            )
        finally:
            _decoding.jobs = ()

    def _remember(self, job: Job, keys: list[Any], cache: Any) -> None:
        """Keep the conversation's cache for its next turn (unless anonymous).

        A cancelled generation is kept too: its cache holds exactly the prompt and the tokens
        it forwarded before it stopped, and the keys claim no more than that. A discarded
        speculation (the user spoke on) thus leaves the conversation's history prefilled for
        the longer utterance that follows, instead of costing it a whole prefill.
        """
        if not self.prefix_reuse or job.conversation_id is None:
            if job.conversation_id is not None:
                self.store.drop_conversation(job.conversation_id)
            return
        full = keys + list(job.generated)
        length = min(cache.get_seq_length(), len(full))
        self.store.put_conversation(
            job.conversation_id,
            Conversation(keys=full[:length], cache=cache, bytes=cache_bytes(cache)),
        )

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's cache."""
        self.store.drop_conversation(conversation_id)


def _row_cache(cache: Any, row: int, padding: int) -> DynamicCache:
    """One row of a left-padded batch cache, without its padding, as its own cache."""
    single = DynamicCache()
    for index, layer in enumerate(cache.layers):
        keys = layer.keys[row : row + 1, :, padding:].clone()
        values = layer.values[row : row + 1, :, padding:].clone()
        single.update(keys, values, index)
    return single
