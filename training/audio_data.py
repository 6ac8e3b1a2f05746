"""Synthesize the spoken data: utterances rendered by many voices in many acoustic conditions.

A split is a folder of chunk files (``chunk_00000.npz``), each holding up to ``CHUNK`` clips:
the clip as 16 kHz int16 samples, its mel features (only the frames that speech touches; see
``features.py``) and its description (text, calls, voice, conditions) as JSON. Chunks are
written one by one, so an interrupted build resumes where it stopped, and every clip's
rendering is drawn from the split's seed alone, so a rebuild gives the same data.

Splits:

- ``train``: training phrasings and voices, rate and pitch grids, training noise types at
  0-30 dB on most clips, reverberation on some, loudness from -30 to -1 dBFS.
- ``dev``: for iterating on the recipe: training phrasings, espeak-ng variants of neither
  the training nor the held-out set, flite/festival training voices at held-out rates and
  pitches, training noise types at 10 dB on half the clips.
- ``heldout``: the benchmark: held-out phrasings, voices, rates and pitches; every utterance
  twice, clean and in held-out noise types at exactly 10 dB SNR.
- ``more``: as ``train``, with the training part of ``more_phrasings`` beside the training
  phrasings (for a recipe that trains on more ways to say each command).
- ``devnew``: as ``dev``, but the commands are said in the part of ``more_phrasings`` that
  ``more`` never uses: how a recipe copes with new phrasings, without the held-out split.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training import augment, grammar, voices
from training.features import speech_features

CHUNK = 64
SPLIT_SEEDS = {"train": 1, "dev": 2, "heldout": 3, "more": 4, "devnew": 5}
LIKE = {"train": "train", "more": "train", "dev": "dev", "devnew": "dev", "heldout": "heldout"}
"""Which of the three kinds of split each split is (voices, rates, pitches, conditions)."""
PHRASINGS = {"train": "train", "more": "more", "dev": "train", "devnew": "devnew",
             "heldout": "heldout"}  # fmt: skip
"""The phrasing set (``grammar.templates``) each split speaks."""
SYNTH_WEIGHTS = {"espeak": 0.55, "flite": 0.25, "festival": 0.20}
DEV_VARIANT_FRACTION = 0.12
"""Share of the training espeak-ng variants kept for the dev set (out of training)."""


@dataclass
class Rendering:
    """How one clip is made."""

    index: int
    text: str
    kind: str
    template: str
    calls: list[dict[str, Any]]
    synth: str
    voice: str
    rate: float
    pitch_cents: int
    espeak_pitch: int = 50
    lead_s: float = 0.3
    trail_s: float = 0.5
    peak_dbfs: float = -3.0
    rt60_s: float | None = None
    noise: str | None = None
    snr_db: float | None = None
    seed: int = 0
    condition: str = "clean"
    extra: dict[str, Any] = field(default_factory=dict)


def _voice_pools(part: str) -> dict[str, list[voices.Voice]]:
    """Voices of a split; ``dev`` takes a slice of espeak-ng variants away from ``train``."""
    kind = LIKE[part]
    if kind == "heldout":
        return voices.voices("heldout")
    pools = voices.voices("train")
    espeak = pools["espeak"]
    variants = sorted({v.name.split("+")[1] for v in espeak})
    _, dev = voices.split_variants(variants, DEV_VARIANT_FRACTION, voices.VOICE_SPLIT_SEED + 1)
    wanted = set(dev)
    keep = (lambda v: v in wanted) if kind == "dev" else (lambda v: v not in wanted)
    pools["espeak"] = [v for v in espeak if keep(v.name.split("+")[1])]
    return pools


def renderings(part: str, count: int, seed: int | None = None) -> list[Rendering]:
    """The deterministic list of clips of a split."""
    seed = SPLIT_SEEDS[part] if seed is None else seed
    rng = random.Random(seed * 7919 + 11)
    pools = _voice_pools(part)
    kind = LIKE[part]  # train, dev or heldout: voices, grids, conditions
    grid = "train" if kind == "train" else "heldout"
    out: list[Rendering] = []
    for utterance in grammar.utterances(PHRASINGS[part], count, seed):
        synth = rng.choices(list(SYNTH_WEIGHTS), list(SYNTH_WEIGHTS.values()))[0]
        voice = rng.choice(pools[synth])
        r = Rendering(
            index=len(out),
            text=utterance.text,
            kind=utterance.kind,
            template=utterance.template,
            calls=[c.as_dict() for c in utterance.calls],
            synth=synth,
            voice=voice.name,
            rate=rng.choice(voices.RATE_GRID[grid]),
            pitch_cents=rng.choice(voices.PITCH_GRID[grid]) if rng.random() < 0.6 else 0,
            espeak_pitch=rng.choice(range(10, 91, 10) if grid == "train" else range(15, 86, 10)),
            lead_s=round(rng.uniform(0.05, 0.6), 3),
            trail_s=round(rng.uniform(0.15, 0.8), 3),
            peak_dbfs=round(rng.uniform(-30, -1), 1),
            seed=rng.randrange(2**31),
        )
        if kind == "train":
            if rng.random() < 0.3:
                r.rt60_s = round(rng.uniform(0.15, 0.9), 2)
            if rng.random() < 0.6:
                r.noise = rng.choice(list(augment.TRAIN_NOISES))
                r.snr_db = round(rng.uniform(0, 30), 1)
        elif kind == "dev":
            if rng.random() < 0.5:
                r.noise = rng.choice(list(augment.TRAIN_NOISES))
                r.snr_db = 10.0
                r.condition = "noise10"
        else:
            r.lead_s = round(rng.uniform(0.2, 0.4), 3)  # what the product's VAD leaves
            r.trail_s = round(rng.uniform(0.4, 0.6), 3)
        out.append(r)
    if kind == "heldout":  # every utterance again, in held-out noise at 10 dB
        noisy = []
        for r in out:
            twin = Rendering(**{**asdict(r), "index": len(out) + r.index})
            twin.noise = rng.choice(list(augment.HELDOUT_NOISES))
            twin.snr_db = 10.0
            twin.condition = "noise10"
            twin.extra = {"clean_index": r.index}
            noisy.append(twin)
        out += noisy
    return out


def _speak(items: list[Rendering]) -> list[tuple[np.ndarray, voices.Words]]:
    """Clean speech of each rendering with its word timings (festival ones in one batch;
    flite gives no timings)."""
    clips: list[tuple[np.ndarray, voices.Words] | None] = [None] * len(items)
    festival = [i for i, r in enumerate(items) if r.synth == "festival"]
    spoken = voices.festival_batch(
        [(items[i].text, items[i].voice, items[i].rate) for i in festival]
    )
    for i, result in zip(festival, spoken, strict=True):
        clips[i] = result
    for i, r in enumerate(items):
        if r.synth == "espeak":
            clips[i] = voices.espeak(r.text, r.voice, r.rate, r.espeak_pitch)
        elif r.synth == "flite":
            clips[i] = (voices.flite(r.text, r.voice, r.rate), [])
    return [c for c in clips if c is not None]


def word_timings(text: str, known: voices.Words, end_s: float) -> list[list[float]] | None:
    """``[start_s, end_s]`` of every word of ``text``, from the starts the synthesizer gave
    (words it gave none for share their neighbours' span by length); None without any."""
    spans = voices.word_spans(text)
    starts: dict[int, float] = {}
    for index, start in known:
        starts.setdefault(index, start)
    if not spans or 0 not in starts:
        return None
    anchors = [*sorted(starts.items()), (len(spans), end_s)]
    out: list[list[float]] = []
    for (a, t0), (b, t1) in itertools.pairwise(anchors):
        if t1 <= t0:
            return None
        lengths = [spans[k][1] - spans[k][0] for k in range(a, b)]
        total = sum(lengths)
        t = t0
        for length in lengths:
            step = (t1 - t0) * length / total
            out.append([round(t, 3), round(t + step, 3)])
            t += step
    return out


def render_chunk(items: list[Rendering]) -> dict[str, Any]:
    """Render clips: speech, pitch, reverberation, silence, noise, loudness, int16, features."""
    spoken = _speak(items)
    clean, timings = [], []
    for (speech, words), r in zip(spoken, items, strict=True):
        trimmed, cut_s = voices.trim_silence(voices.pitch_shift(speech, r.pitch_cents))
        clean.append(trimmed)
        shifted = [(k, t - cut_s + r.lead_s) for k, t in words]
        timings.append(word_timings(r.text, shifted, r.lead_s + len(trimmed) / 16000 - 0.03))
    samples, feats, floors = [], [], []
    for r, speech, words in zip(items, clean, timings, strict=True):
        r.extra = {**r.extra, "words": words}
        rng = np.random.default_rng(r.seed)
        x = speech
        if r.rt60_s is not None:
            x = augment.reverberate(x, augment.room_impulse(rng, r.rt60_s))
        x = augment.pad_silence(augment.normalize_peak(x, -6.0), r.lead_s, r.trail_s)
        if r.noise is not None and r.snr_db is not None:
            makers = {**augment.TRAIN_NOISES, **augment.HELDOUT_NOISES}
            pool = [c for c, other in zip(clean, items, strict=True) if other is not r] or [x]
            x = augment.mix_at_snr(x, makers[r.noise](rng, len(x), pool), r.snr_db)
        x = augment.normalize_peak(x, r.peak_dbfs)
        pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
        speech_frames, floor = speech_features(pcm)
        samples.append(pcm)
        feats.append(speech_frames.astype(np.float16))
        floors.append(floor)
    return {
        "pcm": np.concatenate(samples),
        "pcm_lengths": np.array([len(s) for s in samples], dtype=np.int64),
        "feats": np.concatenate(feats, axis=1),
        "feat_lengths": np.array([f.shape[1] for f in feats], dtype=np.int64),
        "floors": np.array(floors, dtype=np.float32),
        "meta": json.dumps([asdict(r) for r in items]),
    }


def _write_chunk(path: Path, items: list[Rendering]) -> int:
    import torch

    torch.set_num_threads(1)
    data = render_chunk(items)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return len(items)


def build_split(
    folder: str | Path, part: str, count: int, workers: int = 2, seed: int | None = None
) -> Path:
    """Synthesize (or finish synthesizing) split ``part`` into ``folder/part``."""
    from tqdm import tqdm

    out = Path(folder) / part
    out.mkdir(parents=True, exist_ok=True)
    items = renderings(part, count, seed)
    (out / "split.json").write_text(json.dumps({"part": part, "count": count, "seed": seed}))
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    todo = [(out / f"chunk_{n:05d}.npz", c) for n, c in enumerate(chunks)]
    todo = [(p, c) for p, c in todo if not p.exists()]
    with tqdm(total=len(items), initial=len(items) - sum(len(c) for _, c in todo),
              desc=f"synthesize {part}", unit="clip") as bar:  # fmt: skip
        if workers <= 1:
            for p, c in todo:
                bar.update(_write_chunk(p, c))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(_write_chunk, [p for p, _ in todo], [c for _, c in todo]):
                    bar.update(done)
    return out


@dataclass
class Split:
    """A synthesized split in memory: metadata, features and samples of every clip."""

    meta: list[dict[str, Any]]
    feats: list[np.ndarray]
    """Per clip, float16 (128, speech frames)."""
    floors: np.ndarray
    pcm: list[np.ndarray]

    def first(self, count: int) -> Split:
        """The first ``count`` clips."""
        return Split(self.meta[:count], self.feats[:count], self.floors[:count], self.pcm[:count])


def concat(splits: list[Split]) -> Split:
    """One split holding the clips of ``splits`` in order."""
    if len(splits) == 1:
        return splits[0]
    return Split(
        meta=[m for s in splits for m in s.meta],
        feats=[f for s in splits for f in s.feats],
        floors=np.concatenate([s.floors for s in splits]),
        pcm=[p for s in splits for p in s.pcm],
    )


def load_split(
    folder: str | Path, part: str, with_pcm: bool = False, count: int | None = None
) -> Split:
    """Read every chunk of a split, or only the first ``count`` clips.

    A split's clips are a fixed sequence, so a folder built for 16,000 clips holds the 8,000 of
    a run that asks for 8,000 first: ``count`` keeps such a run to its own clips.
    """
    meta: list[dict[str, Any]] = []
    feats: list[np.ndarray] = []
    floors: list[np.ndarray] = []
    pcm: list[np.ndarray] = []
    for path in sorted((Path(folder) / part).glob("chunk_*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        if count is not None and len(meta) >= count:
            break
        with np.load(path) as data:
            meta += json.loads(str(data["meta"]))
            feats += np.split(data["feats"], np.cumsum(data["feat_lengths"])[:-1], axis=1)
            floors.append(data["floors"])
            if with_pcm:
                pcm += np.split(data["pcm"], np.cumsum(data["pcm_lengths"])[:-1])
    if count is not None and len(meta) < count:
        raise ValueError(f"{part}: {len(meta)} clips in {folder}, {count} asked for (run 'data')")
    split = Split(meta, feats, np.concatenate(floors) if floors else np.zeros(0), pcm)
    return split if count is None else split.first(count)


def iter_texts(part: str, count: int) -> Iterator[str]:
    """The transcripts of a split without synthesizing it (for the tokenizer)."""
    for r in renderings(part, count):
        yield r.text
