"""A Tekken tokenizer whose byte-pair merges are learned on the demo's own texts.

Tekken is tiktoken-style byte-level BPE: the vocabulary is a list of byte strings by rank,
the first 256 being the single bytes, and a text is split by the file's regex pattern, then
merged pair by pair, lowest rank first. Learning the merges on exactly what the demo model
reads and writes (the shipped tools as mistral-common renders them, tool calls, tool results,
replies, transcripts) makes every frequent word one token: the tools text that costs 2,050
tokens with a generic tiny vocabulary costs ~650 here, a transcript is about one token a word.
Any other text still encodes, byte by byte where nothing is learned.

The file keeps Voxtral's special tokens (``[AUDIO]`` = 24, ...), its regex pattern and audio
section, and tokenizer version v7, as ``assistant.testing.tekken`` writes them.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import regex

from assistant.testing.tekken import AUDIO_SECTION, NUM_SPECIAL_TOKENS, PATTERN, SPECIAL_TOKENS

MAX_MERGES = 2500
MIN_PAIR_COUNT = 3


def learn_merges(texts: Iterable[str], max_merges: int = MAX_MERGES) -> list[bytes]:
    """BPE merges (as the merged byte strings, in order) learned on ``texts``."""
    words: Counter[bytes] = Counter()
    pattern = regex.compile(PATTERN)
    for text in texts:
        words.update(piece.encode("utf-8") for piece in pattern.findall(text))
    seqs = [[bytes([b]) for b in w] for w in words]
    counts = list(words.values())
    merges: list[bytes] = []
    known = {bytes([i]) for i in range(256)}
    while len(merges) < max_merges:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for seq, n in zip(seqs, counts, strict=True):
            for a, b in itertools.pairwise(seq):
                pairs[(a, b)] += n
        if not pairs:
            break
        (left, right), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if count < MIN_PAIR_COUNT:
            break
        merged = left + right
        if merged not in known:
            known.add(merged)
            merges.append(merged)
        for seq in seqs:
            i = 0
            while i < len(seq) - 1:
                if seq[i] == left and seq[i + 1] == right:
                    seq[i : i + 2] = [merged]
                i += 1
    return merges


def tekken_json(merges: list[bytes], version: str = "v7") -> dict[str, Any]:
    """The content of ``tekken.json`` for a vocabulary of single bytes + ``merges``."""
    vocab = []
    for rank, data in enumerate([bytes([i]) for i in range(256)] + merges):
        try:
            text: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        vocab.append(
            {"rank": rank, "token_bytes": base64.b64encode(data).decode(), "token_str": text}
        )
    specials = [
        {"rank": i, "token_str": SPECIAL_TOKENS.get(i, f"<SPECIAL_{i}>"), "is_control": True}
        for i in range(NUM_SPECIAL_TOKENS)
    ]
    return {
        "config": {
            "pattern": PATTERN,
            "num_vocab_tokens": len(vocab),
            "default_vocab_size": len(vocab) + NUM_SPECIAL_TOKENS,
            "default_num_special_tokens": NUM_SPECIAL_TOKENS,
            "version": version,
        },
        "vocab": vocab,
        "special_tokens": specials,
        "audio": dict(AUDIO_SECTION),
    }


def write_tekken(folder: str | Path, merges: list[bytes]) -> Path:
    """Write ``folder/tekken.json``; return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tekken.json"
    path.write_text(json.dumps(tekken_json(merges), ensure_ascii=False), "utf-8")
    return path


def corpus(examples: int = 4000, seed: int = 0) -> list[str]:
    """The texts between special tokens of ``examples`` training conversations (all kinds)."""
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from assistant.testing.tekken import write_tekken as write_bootstrap
    from training import grammar
    from training.conversations import Clip, ExampleMaker

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = MistralTokenizer.from_file(str(write_bootstrap(tmp, "v7", "tiny")))
    maker = ExampleMaker(tokenizer)
    tekken = tokenizer.instruct_tokenizer.tokenizer
    clips = [
        Clip(i, u.text, u.kind, list(u.calls))
        for i, u in enumerate(grammar.utterances("train", examples, seed))
    ]
    rng = random.Random(seed)
    texts = []
    for clip in clips:
        tokens = maker.sample(clips, clip, rng).tokens
        run: list[int] = []
        for t in [*tokens.tolist(), 0]:
            if t >= NUM_SPECIAL_TOKENS:
                run.append(t)
            elif run:
                texts.append(tekken.decode(run, special_token_policy=SpecialTokenPolicy.IGNORE))
                run = []
    return texts


def build(folder: str | Path, examples: int = 4000, seed: int = 0) -> Path:
    """Learn the merges on a fresh corpus and write ``folder/tekken.json``."""
    return write_tekken(folder, learn_merges(corpus(examples, seed)))
