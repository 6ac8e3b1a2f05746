"""Stage 2, "speak": the decoder learns to answer, reading audio embeddings the encoder made.

The encoder and projector are frozen after stage 1, so each clip's 375 audio embeddings are
computed once over the full 30 s window, exactly as inference computes them, and cached
(``cache_audio``). The decoder then trains on conversations from ``conversations.py`` with
the loss on the reply's tokens only.

Batches whose prompts start alike (the shipped tools, ``[INST]``) run that shared start once
and hand its keys and values to every row: exact, and most of the prompt's cost.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from assistant.testing.tiny_model import AUDIO_TOKEN_ID, PAD_ID
from training import features
from training.audio_data import Split
from training.conversations import Clip, Example, ExampleMaker
from training.grammar import Call
from training.loop import Stage, lr_at, seed_everything, set_rng_state
from training.model import encode, project
from training.stage_hear import HearConfig, batch_features, training_features

log = logging.getLogger("training")

AUDIO_TOKENS = 375
"""``[AUDIO]`` tokens per clip under 30 s."""


@dataclass
class SpeakConfig:
    """Settings of stage 2."""

    steps: int = 3000
    batch: int = 16
    lr: float = 1.5e-3
    warmup: int = 100
    seed: int = 0
    dev_every: int = 500
    dev_examples: int = 200
    autocast: bool = True
    """bfloat16 matrix products (this CPU has AVX-512 BF16); weights stay float32."""
    audio_frames: int = 3000
    """Mel frames the encoder sees when caching embeddings (3000: the full window, exact)."""
    audio_tokens: int = 128
    """Audio embeddings cached per clip (the speech and its padding up to 10 s)."""
    margin_tokens: tuple[int, int] = (4, 48)
    """Padding tokens kept after each clip's speech in a training step (random in range)."""
    copies: int = 1
    """Renderings of each training clip's audio embeddings the decoder reads: the first as
    synthesized, the others with a fresh noise and warp laid over its features before the
    encoder (``noise``, ``noise_snr``, ``warp``, as stage 1's); an example reads one of them.
    1: only the clips as synthesized (the decoder sees each clip's one encoding every epoch)."""
    noise: float = 0.0
    """Probability that an extra copy of a clip gets a fresh background noise (``mel_noise``)."""
    noise_snr: tuple[float, float] = (0.0, 20.0)
    warp: float = 0.0
    """Vocal tract length warp of the extra copies, a factor in ``1 +- warp`` per clip."""


@torch.no_grad()
def cache_audio(
    model: Any,
    split: Split,
    frames: int = features.WINDOW_FRAMES,
    tokens: int = 128,
    batch: int = 8,
    autocast: bool = True,
    augment: HearConfig | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """The first ``tokens`` audio embeddings of every clip, ``(clips, tokens, hidden)`` float16.

    ``frames`` = 3000 runs the encoder over the full 30 s window, as inference does.
    ``augment``: lay fresh noise, masks and warp over the features first, as stage 1 does
    with these settings, drawn from ``seed`` (the same seed, the same embeddings).
    """
    from tqdm import tqdm

    model.eval()
    out = []
    for start in tqdm(range(0, len(split.meta), batch), desc="audio embeddings", unit="batch"):
        idx = list(range(start, min(start + batch, len(split.meta))))
        if augment is None:
            feats = batch_features(split, idx, frames)
        else:
            feats = training_features(split, idx, frames, augment, seed * 1_000_003 + start, True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            embeds = project(model, encode(model, feats))[:, :tokens]
        out.append(embeds.to(torch.float16))
    model.train()
    return torch.cat(out)


def audio_copies(model: Any, split: Split, config: SpeakConfig, seed: int) -> torch.Tensor:
    """``config.copies`` renderings of every clip's embeddings, stacked: copy ``k`` of clip
    ``i`` is row ``k * clips + i`` (copy 0 as synthesized; see ``SpeakConfig.copies``)."""
    if config.copies < 1:
        raise ValueError(f"speak.copies must be at least 1, not {config.copies}")
    augment = HearConfig(noise=config.noise, noise_snr=config.noise_snr, warp=config.warp)
    frames, tokens = config.audio_frames, config.audio_tokens
    made = [cache_audio(model, split, frames=frames, tokens=tokens)]
    for k in range(1, config.copies):
        made.append(cache_audio(model, split, frames, tokens, augment=augment, seed=seed + k))
    return torch.cat(made)


def copied_clips(split: Split, copies: int) -> tuple[list[Clip], list[int]]:
    """The clips and keep counts of ``audio_copies``' rows: copy ``k`` of clip ``i`` is clip
    ``k * clips + i``, with clip ``i``'s text, calls and speech length."""
    clips = len(split.meta)
    return (
        [c for k in range(copies) for c in clips_of(split, k * clips)],
        keep_counts(split) * copies,
    )


def keep_counts(split: Split) -> list[int]:
    """Audio tokens that each clip's speech (with its silences) covers: 8 mel frames a token."""
    return [int(np.ceil(f.shape[1] / 8)) for f in split.feats]


def clips_of(split: Split, offset: int = 0) -> list[Clip]:
    """The split's clips as the example builder sees them (``offset`` shifts their indices)."""
    return [
        Clip(
            offset + i, m["text"], m["kind"], [Call(c["name"], c["arguments"]) for c in m["calls"]]
        )
        for i, m in enumerate(split.meta)
    ]


def make_examples(maker: ExampleMaker, clips: list[Clip], count: int, seed: int) -> list[Example]:
    """``count`` examples around random clips (deterministic from ``seed``)."""
    from tqdm import tqdm

    rng = random.Random(seed)
    return [maker.sample(clips, rng.choice(clips), rng)
            for _ in tqdm(range(count), desc="examples", unit="ex")]  # fmt: skip


def _rows(
    e: Example, audio: torch.Tensor, keep_audio: dict[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Input ids, positions, labels (``-100``: no loss) and audio rows of an example.

    ``keep_audio`` (clip -> count) keeps only the first ``count`` audio embeddings of a clip
    (the speech and a little padding); the dropped positions stay counted, so every later
    token keeps the position it has at inference.
    """
    ids = torch.from_numpy(e.tokens[:-1].astype(np.int64))
    labels = torch.from_numpy(e.tokens[1:].astype(np.int64))
    labels[: e.target_start - 1] = -100
    positions = torch.arange(len(ids))
    keep = torch.ones(len(ids), dtype=torch.bool)
    audio_at = torch.nonzero(ids == AUDIO_TOKEN_ID).flatten()
    if len(audio_at) != AUDIO_TOKENS * len(e.clips):
        raise ValueError("audio tokens and clips do not match")
    rows = []
    for n, c in enumerate(e.clips):
        count = AUDIO_TOKENS if keep_audio is None else min(AUDIO_TOKENS, keep_audio[c])
        if count > audio.shape[1]:
            raise ValueError(f"clip {c}: {count} audio embeddings wanted, {audio.shape[1]} cached")
        keep[audio_at[n * AUDIO_TOKENS + count : (n + 1) * AUDIO_TOKENS]] = False
        rows.append(audio[c, :count])
    return ids[keep], positions[keep], labels[keep], rows


def _embed(model: Any, ids: torch.Tensor, rows: list[torch.Tensor]) -> torch.Tensor:
    """Embeddings of ``ids`` (any shape) with ``rows`` at the ``[AUDIO]`` places, in order."""
    embeds = model.model.language_model.embed_tokens(ids)
    if rows:
        mask = ids == AUDIO_TOKEN_ID
        embeds = embeds.masked_scatter(mask.unsqueeze(-1), torch.cat(rows).to(embeds.dtype))
    return embeds


def prefix_key(e: Example) -> tuple[int, ...]:
    """The prompt start shared by examples with the same tools and no audio before them."""
    found = np.flatnonzero(e.tokens == 3)  # the first [INST]
    if not found.size or found[0] < 64:
        return ()
    return tuple(int(t) for t in e.tokens[: found[0] + 1])


def batch_loss(
    model: Any,
    examples: list[Example],
    audio: torch.Tensor,
    share_prefix: bool = True,
    keep_audio: dict[int, int] | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the replies' tokens of a batch, and how many there were."""
    from transformers import DynamicCache

    lm = model.model.language_model
    rows = [_rows(e, audio, keep_audio) for e in examples]
    prefix = 0
    if share_prefix and len(examples) > 1:
        keys = {prefix_key(e) for e in examples}
        if len(keys) == 1 and () not in keys:
            prefix = len(next(iter(keys)))
    cache = None
    if prefix:
        single = DynamicCache()
        lm(inputs_embeds=_embed(model, rows[0][0][:prefix].unsqueeze(0), []),
           past_key_values=single, use_cache=True)  # fmt: skip
        cache = DynamicCache()
        for index, layer in enumerate(single.layers):
            shape = (len(examples), *layer.keys.shape[1:])
            cache.update(layer.keys.expand(shape), layer.values.expand(shape), index)
    width = max(len(r[0]) for r in rows) - prefix
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(examples), prefix + width, dtype=torch.long)
    mask[:, :prefix] = 1
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    positions = torch.zeros(len(examples), width, dtype=torch.long)
    audio_rows: list[torch.Tensor] = []
    for row, (e_ids, e_positions, e_labels, e_audio) in enumerate(rows):
        n = len(e_ids) - prefix
        ids[row, :n] = e_ids[prefix:]
        positions[row, :n] = e_positions[prefix:]
        positions[row, n:] = e_positions[-1] + 1 + torch.arange(width - n)
        labels[row, :n] = e_labels[prefix:]
        mask[row, prefix : prefix + n] = 1
        audio_rows += e_audio
    embeds = _embed(model, ids, [r.float() for r in audio_rows])
    out = lm(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=cache is not None,
    ).last_hidden_state
    where = labels != -100
    logits = model.lm_head(out[where])
    loss = nn.functional.cross_entropy(logits.float(), labels[where])
    return loss, int(where.sum())


@torch.no_grad()
def teacher_forced_accuracy(
    model: Any, examples: list[Example], audio: torch.Tensor, keep: dict[int, int] | None = None
) -> dict[str, float]:
    """Share of examples whose every reply token is the model's top choice, by kind."""
    model.eval()
    right: dict[str, list[int]] = {}
    for e in examples:
        ids, positions, labels, rows = _rows(e, audio, keep)
        embeds = _embed(model, ids, [r.float() for r in rows])
        out = model.model.language_model(
            inputs_embeds=embeds.unsqueeze(0), position_ids=positions.unsqueeze(0)
        ).last_hidden_state[0]
        where = labels != -100
        ok = bool((model.lm_head(out[where]).argmax(-1) == labels[where]).all())
        right.setdefault(e.kind, []).append(int(ok))
    model.train()
    return {k: round(float(np.mean(v)), 4) for k, v in right.items()}


def run(folder: Path, model: Any, inputs: dict[str, Any], config: SpeakConfig) -> dict[str, Any]:
    """Train stage 2 (resuming from ``folder/speak.ckpt``); returns dev figures."""
    from tqdm import tqdm

    train_examples: list[Example] = inputs["train_examples"]
    train_audio: torch.Tensor = inputs["train_audio"]
    speech_tokens: list[int] = inputs["train_keep"]
    dev_examples: list[Example] = inputs["dev_examples"]
    dev_audio: torch.Tensor = inputs["dev_audio"]
    dev_keep = {c: min(dev_audio.shape[1], k + config.margin_tokens[1])
                for c, k in enumerate(inputs["dev_keep"])}  # fmt: skip
    stage = Stage(folder, "speak")
    lm = model.model.language_model
    trainable = [*lm.parameters(), *model.lm_head.parameters()]
    for p in model.model.audio_tower.parameters():
        p.requires_grad_(False)
    for p in model.model.multi_modal_projector.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.01, betas=(0.9, 0.98))
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    start = 0
    state = stage.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["sampler"])
        set_rng_state(state["rng"])
        start = state["step"]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(train_examples):
        groups.setdefault(prefix_key(e), []).append(i)
    for key in [k for k, members in groups.items() if k and len(members) < 4 * config.batch]:
        groups.setdefault((), []).extend(groups.pop(key))
    for members in groups.values():  # by length: neighbours make batches with little padding
        members.sort(key=lambda i: len(train_examples[i].tokens))
    group_keys = sorted(groups, key=len)
    group_sizes = [len(groups[k]) for k in group_keys]
    model.train()
    figures: dict[str, Any] = {}
    low, high = config.margin_tokens
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="speak")
    for step in bar:
        pool = groups[rng.choices(group_keys, group_sizes)[0]]
        first = rng.randrange(max(1, len(pool) - config.batch + 1))
        batch = [train_examples[i] for i in pool[first : first + config.batch]]
        keep = {c: min(train_audio.shape[1], speech_tokens[c] + rng.randint(low, high))
                for e in batch for c in e.clips}  # fmt: skip
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.steps, config.lr, config.warmup)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.autocast):
            loss, _ = batch_loss(model, batch, train_audio, keep_audio=keep)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", kind=batch[0].kind)
        if (step + 1) % config.dev_every == 0 or step + 1 == config.steps:
            figures = {"step": step + 1, **teacher_forced_accuracy(
                model, dev_examples[: config.dev_examples], dev_audio, dev_keep)}  # fmt: skip
            log.info("speak step %d: dev %s (%.1f min)", step + 1, figures, stage.seconds() / 60)

        def snapshot(step: int = step) -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "sampler": rng.getstate(),
                "step": step + 1,
            }

        stage.maybe_save(snapshot, force=step + 1 == config.steps)
    stage.finish(figures)
    return figures
