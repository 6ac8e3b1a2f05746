"""Stage 1, "hear": the encoder and projector learn speech with two CTC losses.

Character CTC on the encoder output and token CTC on the projected audio embeddings (the
classifier being the decoder's input embeddings, see ``model.py``). Most steps run the encoder
over a short window (the speech plus some of the padding, a few seconds instead of 30): the
attention cost grows with the square of the window, so this is ~10x faster. The last part of
the stage runs full 30 s windows, as inference does, so the encoder adapts to them.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import features, mel_noise
from training.audio_data import Split
from training.loop import Stage, lr_at, seed_everything, set_rng_state
from training.model import BLANK_ID, TrainingHeads, char_targets, encode, project, spec_of

log = logging.getLogger("training")


@dataclass
class HearConfig:
    """Settings of stage 1."""

    steps: int = 12000
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 100
    full_window_from: float = 0.95
    """Fraction of the steps after which every batch runs the full 30 s window."""
    full_batch: int = 8
    extra_frames: int = 64
    """Up to this many padding frames after the longest clip of a short-window batch."""
    token_weight: float = 1.0
    frame_weight: float = 1.0
    """Weight of the token cross-entropy on audio tokens where the synthesizer said which word
    is spoken (espeak-ng, festival): a direct target that CTC alone needs long to find."""
    clean_until: float = 0.1
    """Fraction of the steps that see only clean clips (no noise, no reverberation) first."""
    autocast: bool = False
    """bfloat16 matrix products (this CPU has AVX-512 BF16); weights stay float32."""
    seed: int = 0
    dev_every: int = 1000
    dev_clips: int = 96
    warp: float = 0.0
    """Vocal tract length perturbation: each training clip's mel features warped by a factor
    drawn from ``1 +- warp`` (0.01 steps; ``features.warp_matrix``), so the encoder meets
    formants its few synthetic speakers lack. 0: off."""
    noise: float = 0.0
    """Probability that a training clip gets a fresh background noise laid over it at each
    step (``mel_noise``: colored, bursts, babble), at an SNR drawn from ``noise_snr``; not
    before ``clean_until``. 0: off (the clips keep only the noise they were rendered with)."""
    noise_snr: tuple[float, float] = (-5.0, 20.0)
    mask: float = 0.0
    """Probability that a training clip's speech frames get SpecAugment masks (two bands of
    up to 12 mel bins, two stretches of up to 15 frames, set to the clip's mean). 0: off."""


def word_text(text: str) -> str:
    """What CTC should find in the audio: lower-case words, each with its leading space."""
    words = "".join(ch if ch.isalnum() or ch in " '" else " " for ch in text.lower()).split()
    return "".join(" " + w for w in words)


def token_targets(tokenizer: Any, text: str) -> list[int]:
    """The words of ``text`` as the decoder's tokens."""
    tekken = tokenizer.instruct_tokenizer.tokenizer
    return list(tekken.encode(word_text(text), bos=False, eos=False))


TOKEN_S = 0.08
"""Seconds of audio per audio token (8 mel frames of 10 ms)."""


def word_token_spans(
    tokenizer: Any, text: str, words: list[list[float]] | None, index: dict[int, int]
) -> list[tuple[int, float, float]]:
    """(class, start_s, end_s) of each token of each timed word (a word's tokens share its span)."""
    if not words:
        return []
    spoken = word_text(text).split()
    if len(spoken) != len(words):
        return []
    tekken = tokenizer.instruct_tokenizer.tokenizer
    out = []
    for word, (start, end) in zip(spoken, words, strict=True):
        ids = tekken.encode(" " + word, bos=False, eos=False)
        step = (end - start) / len(ids)
        out += [(index[t], start + k * step, start + (k + 1) * step) for k, t in enumerate(ids)
                if t in index]  # fmt: skip
    return out


def frame_targets(spans: list[tuple[int, float, float]], tokens: int) -> list[int]:
    """Per audio token: the class of the word token spoken at its centre, else 0 (blank);
    ``-100`` everywhere (no loss) for a clip without timings."""
    if not spans:
        return [-100] * tokens
    out = [0] * tokens
    for cls, start, end in spans:
        first = max(0, int(np.ceil(start / TOKEN_S - 0.5)))
        last = min(tokens, int(np.ceil(end / TOKEN_S - 0.5)))
        for j in range(first, last):
            out[j] = cls
    return out


def batch_features(split: Split, indices: list[int], frames: int) -> torch.Tensor:
    """Mel features ``(batch, 128, frames)``: the first ``frames`` of each clip's 30 s window."""
    return torch.stack([features.window(split.feats[i], float(split.floors[i]), frames)
                        for i in indices])  # fmt: skip


def short_frames(split: Split, indices: list[int], extra: int, rng: random.Random) -> int:
    """A short window: the longest clip plus some padding, a multiple of 8, at most 3000."""
    longest = max(split.feats[i].shape[1] for i in indices)
    return min(features.WINDOW_FRAMES, int(math.ceil((longest + rng.randint(8, extra)) / 8) * 8))


def warped(feats: torch.Tensor, amount: float, seed: int) -> torch.Tensor:
    """``feats`` ``(batch, 128, frames)`` with each clip's frequencies warped by its own
    factor in ``1 +- amount``, drawn from ``seed`` alone (a resumed run warps the same way)."""
    if amount <= 0:
        return feats
    rng = random.Random(seed)
    steps = round(amount * 100)
    alphas = [1 + rng.randint(-steps, steps) / 100 for _ in range(feats.shape[0])]
    matrices = torch.stack([features.warp_matrix(a) for a in alphas])
    return torch.bmm(matrices, feats)


def masked(row: torch.Tensor, speech_frames: int, rng: np.random.Generator) -> torch.Tensor:
    """``row`` ``(128, frames)`` with two frequency bands and two stretches of its speech frames
    set to their mean (SpecAugment); the padding after the speech stays as inference has it."""
    row = row.clone()
    speech = row[:, :speech_frames]
    fill = float(speech.mean())
    for _ in range(2):
        width = int(rng.integers(0, 13))
        low = int(rng.integers(0, row.shape[0] - width + 1))
        speech[low : low + width, :] = fill
    for _ in range(2):
        width = int(rng.integers(0, min(15, speech_frames // 10) + 1))
        start = int(rng.integers(0, speech_frames - width + 1))
        speech[:, start : start + width] = fill
    return row


def training_features(
    split: Split, indices: list[int], frames: int, config: HearConfig, seed: int, noisy: bool
) -> torch.Tensor:
    """A training batch's features: fresh noise (if ``noisy``), masks and warp as ``config``
    asks, each drawn from ``seed`` alone (a resumed step augments the same way)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in indices:
        speech: np.ndarray | torch.Tensor = split.feats[i]
        floor = float(split.floors[i])
        if noisy and rng.random() < config.noise:
            others = [split.feats[j] for j in rng.integers(0, len(split.feats), 6)]
            made = mel_noise.noise(rng, speech.shape[1], others)
            low, high = config.noise_snr
            speech, floor = features.mix_noise(
                speech, torch.from_numpy(made).float(), float(rng.uniform(low, high))
            )
        row = features.window(speech, floor, frames)
        if rng.random() < config.mask:
            row = masked(row, min(frames, speech.shape[1]), rng)
        rows.append(row)
    return warped(torch.stack(rows), config.warp, seed)


def token_logits(
    model: Any, heads: TrainingHeads, audio: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """Token CTC logits over ``classes`` (token ids; the blank first): audio . embedding."""
    table = model.model.language_model.embed_tokens.weight[classes]
    return heads.token_scale.exp() * (audio @ table.T.to(audio.dtype))


def length_buckets(
    lengths: list[int], size: int, rng: random.Random, pool: Any = None
) -> list[list[int]]:
    """One epoch of batches of clips of similar length (little padding), in random order."""
    members = range(len(lengths)) if pool is None else pool
    order = sorted(members, key=lambda i: lengths[i] + rng.uniform(0, 40))
    batches = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    rng.shuffle(batches)
    return batches


def ctc_losses(
    model: Any,
    heads: TrainingHeads,
    feats: torch.Tensor,
    chars: list[list[int]],
    tokens: list[list[int]],
    classes: torch.Tensor,
    autocast: bool = True,
    frames: list[list[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Character CTC, token CTC (mean per target symbol) and the per-audio-token
    cross-entropy where ``frames`` gives targets (indices into ``classes``, 0 the blank)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        encoded = encode(model, feats)
        audio = project(model, encoded)
        char_logits = heads.chars(encoded)
        tok_logits = token_logits(model, heads, audio, classes)
    char_logp = char_logits.float().log_softmax(-1).transpose(0, 1)
    token_logp = tok_logits.float().log_softmax(-1).transpose(0, 1)
    batch = feats.shape[0]
    char_loss = nn.functional.ctc_loss(
        char_logp,
        torch.tensor([c for seq in chars for c in seq]),
        torch.full((batch,), char_logp.shape[0], dtype=torch.long),
        torch.tensor([len(s) for s in chars]),
        blank=0,
        zero_infinity=True,
    )
    token_loss = nn.functional.ctc_loss(
        token_logp,
        torch.tensor([t for seq in tokens for t in seq]),
        torch.full((batch,), token_logp.shape[0], dtype=torch.long),
        torch.tensor([len(s) for s in tokens]),
        blank=0,
        zero_infinity=True,
    )
    frame_loss = token_logp.new_zeros(())
    if frames is not None:
        targets = torch.tensor(frames)
        if bool((targets != -100).any()):
            frame_loss = nn.functional.cross_entropy(
                token_logp.transpose(0, 1).reshape(-1, token_logp.shape[-1]),
                targets.reshape(-1),
                ignore_index=-100,
            )
    return char_loss, token_loss, frame_loss


def _greedy(logp: torch.Tensor, blank: int) -> list[int]:
    best = logp.argmax(-1).tolist()
    out, last = [], None
    for b in best:
        if b != last and b != blank:
            out.append(b)
        last = b
    return out


def edit_distance(a: list[Any], b: list[Any]) -> int:
    """Levenshtein distance between two sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@torch.no_grad()
def dev_error_rates(
    model: Any,
    heads: TrainingHeads,
    split: Split,
    tokenizer: Any,
    count: int,
    frames: int,
    classes: torch.Tensor,
) -> dict[str, float]:
    """Character and token error rates of greedy CTC on the first ``count`` dev clips."""
    model.eval()
    char_err = char_n = tok_err = tok_n = 0
    for start in range(0, min(count, len(split.meta)), 8):
        idx = list(range(start, min(start + 8, count, len(split.meta))))
        f = frames if frames else short_frames(split, idx, 16, random.Random(0))
        encoded = encode(model, batch_features(split, idx, f))
        char_logp = heads.chars(encoded).log_softmax(-1)
        token_logp = token_logits(model, heads, project(model, encoded), classes).log_softmax(-1)
        for row, i in enumerate(idx):
            text = split.meta[i]["text"]
            want_c = char_targets(text)
            want_t = token_targets(tokenizer, text)
            char_err += edit_distance(_greedy(char_logp[row], 0), want_c)
            got_t = [int(classes[k]) for k in _greedy(token_logp[row], 0)]
            tok_err += edit_distance(got_t, want_t)
            char_n += len(want_c)
            tok_n += len(want_t)
    model.train()
    return {"cer": char_err / max(1, char_n), "ter": tok_err / max(1, tok_n)}


def run(
    folder: Path, model: Any, tokenizer: Any, train: Split, dev: Split, config: HearConfig
) -> dict[str, Any]:
    """Train stage 1 (resuming from ``folder/hear.ckpt``); returns its dev figures."""
    from tqdm import tqdm

    stage = Stage(folder, "hear")
    heads = TrainingHeads(spec_of(model))
    tower = model.model.audio_tower
    trainable = [p for p in tower.parameters() if p.requires_grad]
    trainable += list(model.model.multi_modal_projector.parameters())
    trainable += [model.model.language_model.embed_tokens.weight, *heads.parameters()]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.01, betas=(0.9, 0.98))
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    start = 0
    state = stage.load()
    if state is not None:
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        rng.setstate(state["sampler"])
        set_rng_state(state["rng"])
        start = state["step"]
    chars = [char_targets(m["text"]) for m in train.meta]
    tokens = [token_targets(tokenizer, m["text"]) for m in train.meta]
    classes_list = [BLANK_ID, *sorted({t for seq in tokens for t in seq})]
    classes = torch.tensor(classes_list)
    index = {t: i for i, t in enumerate(classes_list)}
    tokens = [[index[t] for t in seq] for seq in tokens]
    spans = [word_token_spans(tokenizer, m["text"], m.get("extra", {}).get("words"), index)
             for m in train.meta]  # fmt: skip
    lengths = [f.shape[1] for f in train.feats]
    clean = [i for i, m in enumerate(train.meta) if m["noise"] is None and m["rt60_s"] is None]
    clean_until = int(config.steps * config.clean_until)
    model.train()
    full_from = int(config.steps * config.full_window_from)
    figures: dict[str, Any] = {}
    batches: list[list[int]] = [] if state is None else state.get("batches", [])
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="hear")
    for step in bar:
        if step >= full_from:
            idx = rng.sample(range(len(train.meta)), config.full_batch)
            frames = features.WINDOW_FRAMES
        else:
            if not batches or (step == clean_until and start < clean_until):
                pool = clean if step < clean_until else range(len(lengths))
                batches = length_buckets(lengths, config.batch, rng, pool)
            idx = batches.pop()
            frames = short_frames(train, idx, config.extra_frames, rng)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.steps, config.lr, config.warmup)
        char_loss, token_loss, frame_loss = ctc_losses(
            model, heads,
            training_features(train, idx, frames, config, config.seed * 1_000_003 + step,
                              noisy=step >= clean_until),
            [chars[i] for i in idx], [tokens[i] for i in idx], classes, config.autocast,
            [frame_targets(spans[i], frames // 8) for i in idx],
        )  # fmt: skip
        loss = char_loss + config.token_weight * token_loss + config.frame_weight * frame_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        bar.set_postfix(char=f"{char_loss.item():.3f}", tok=f"{token_loss.item():.3f}",
                        frame=f"{frame_loss.item():.3f}", T=frames)  # fmt: skip
        if (step + 1) % config.dev_every == 0 or step + 1 == config.steps:
            short = dev_error_rates(model, heads, dev, tokenizer, config.dev_clips, 0, classes)
            full_rates = dev_error_rates(
                model, heads, dev, tokenizer, config.dev_clips, 3000, classes
            )
            figures = {"step": step + 1, "short": short, "full": full_rates}
            log.info("hear step %d: dev %s (%.1f min)", step + 1, figures, stage.seconds() / 60)

        def snapshot(step: int = step, batches: list[list[int]] = batches) -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "heads": heads.state_dict(),
                "optimizer": optimizer.state_dict(),
                "sampler": rng.getstate(),
                "batches": batches,
                "step": step + 1,
            }

        stage.maybe_save(snapshot, force=step + 1 == config.steps)
    stage.finish(figures)
    return figures
