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

import json
import random
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import regex

from assistant.testing import tekken
from assistant.testing.tekken import NUM_SPECIAL_TOKENS, PATTERN, TokenizerVersion

MAX_MERGES = 2500
MIN_PAIR_COUNT = 3


def learn_merges(texts: Iterable[str], max_merges: int = MAX_MERGES) -> list[bytes]:
    """BPE merges (as the merged byte strings, in order) learned on ``texts``."""
    words: Counter[bytes] = Counter()
    pattern = regex.compile(PATTERN)
    for text in texts:
        words.update(piece.encode("utf-8") for piece in pattern.findall(text))
    return tekken.learn_merges(
        words.items(), max_merges=max_merges, min_count=MIN_PAIR_COUNT, ties="largest"
    )


def tekken_json(merges: list[bytes], version: TokenizerVersion = "v7") -> dict[str, Any]:
    """The content of ``tekken.json`` for a vocabulary of single bytes + ``merges``."""
    return tekken.tekken_file(tekken.merges_vocab(merges), version)


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
