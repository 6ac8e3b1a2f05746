"""Write a synthetic ``tekken.json`` with Voxtral's audio section and special-token layout.

Two vocabularies:

- ``tiny``: the 256 single bytes plus a few hundred byte-pair merges of common English, so that
  text tokenizes into a realistic mix of multi-byte tokens and a tiny model stays tiny;
- ``tekken``: the real 150k Tekken vocabulary that mistral-common ships in its wheel
  (``mistral_common/data/tekken_240911.json``), for realistic text tokenization.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

TokenizerVersion = Literal["v7", "v11", "v13"]
Vocabulary = Literal["tiny", "tekken"]

NUM_SPECIAL_TOKENS = 1000
"""As in Mistral's own files: regular token id = rank + 1000."""

TEKKEN_VOCAB_SIZE = 131072
"""Voxtral's embedding size; the real vocabulary is cut to this many ids."""

SPECIAL_TOKENS: dict[int, str] = {
    0: "<unk>",
    1: "<s>",
    2: "</s>",
    3: "[INST]",
    4: "[/INST]",
    5: "[AVAILABLE_TOOLS]",
    6: "[/AVAILABLE_TOOLS]",
    7: "[TOOL_RESULTS]",
    8: "[/TOOL_RESULTS]",
    9: "[TOOL_CALLS]",
    10: "[IMG]",
    11: "<pad>",
    12: "[IMG_BREAK]",
    13: "[IMG_END]",
    14: "[PREFIX]",
    15: "[MIDDLE]",
    16: "[SUFFIX]",
    17: "[SYSTEM_PROMPT]",
    18: "[/SYSTEM_PROMPT]",
    19: "[TOOL_CONTENT]",
    24: "[AUDIO]",
    25: "[BEGIN_AUDIO]",
    32: "[ARGS]",
    33: "[CALL_ID]",
    34: "[TRANSCRIBE]",
}
"""Voxtral's special-token ids (the rest of the first 1000 are ``<SPECIAL_n>`` fillers)."""

AUDIO_SECTION: dict[str, Any] = {
    "sampling_rate": 16000,
    "frame_rate": 12.5,
    "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
    # Without chunk_length_s a short clip gets too few [AUDIO] tokens for the 30 s encoder window.
    "chunk_length_s": 30.0,
    "transcription_format": "instruct",
}

# The pre-tokenization regex of Mistral's Tekken files.
PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Seed text for the tiny vocabulary's merges: the words a voice assistant hears and says.
_MERGE_CORPUS = (
    "the kitchen lights are on turn off the living room light please set the thermostat to "
    "twenty degrees what time is it now the weather today is sunny and warm remind me in ten "
    "minutes to check the oven hello how can I help you I have turned on the lights for you "
    "tool call arguments name room state temperature bedroom bathroom office garage door "
    "unlock lock timer reminder seconds hours yes no thank you okay sure done"
)
_NUM_MERGES = 400


def _special_tokens() -> list[dict[str, Any]]:
    return [
        {"rank": i, "token_str": SPECIAL_TOKENS.get(i, f"<SPECIAL_{i}>"), "is_control": True}
        for i in range(NUM_SPECIAL_TOKENS)
    ]


def _token(rank: int, data: bytes) -> dict[str, Any]:
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"rank": rank, "token_bytes": base64.b64encode(data).decode("ascii"), "token_str": text}


def learn_merges(
    words: Iterable[tuple[bytes, int]],
    *,
    max_merges: int,
    min_count: int,
    ties: Literal["first", "largest"] = "first",
) -> list[bytes]:
    """Byte-pair merges (the merged byte strings, in order) learned on ``words``, each a
    pre-tokenized piece with its count: the most frequent adjacent pair is merged, again and
    again, until ``max_merges`` or no pair is seen ``min_count`` times. Among pairs of equal
    count ``ties`` picks the first seen or the largest (the demo's tokenizer, see
    ``training/tokenizer.py``); the choice changes the vocabulary, not its quality."""
    pieces = [([bytes([b]) for b in word], count) for word, count in words]
    merges: list[bytes] = []
    known = {bytes([i]) for i in range(256)}
    while len(merges) < max_merges:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for seq, count in pieces:
            for pair in itertools.pairwise(seq):
                pairs[pair] += count
        if not pairs:
            break
        if ties == "first":  # max keeps the first of equal keys: the first pair seen
            (left, right), seen = max(pairs.items(), key=lambda kv: kv[1])
        else:
            (left, right), seen = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if seen < min_count:
            break
        merged = left + right
        if merged not in known:
            known.add(merged)
            merges.append(merged)
        for seq, _ in pieces:
            i = 0
            while i < len(seq) - 1:
                if seq[i] == left and seq[i + 1] == right:
                    seq[i : i + 2] = [merged]
                i += 1
    return merges


def merges_vocab(merges: list[bytes]) -> list[dict[str, Any]]:
    """A ``tekken.json`` vocabulary: the 256 single bytes, then ``merges``."""
    return [_token(r, data) for r, data in enumerate([bytes([i]) for i in range(256)] + merges)]


def _tiny_vocab() -> list[dict[str, Any]]:
    """Single bytes, then byte-pair merges learned from a small corpus (a real BPE)."""
    words = [(b" " + w, 1) for w in _MERGE_CORPUS.encode().split()]
    return merges_vocab(learn_merges(words, max_merges=_NUM_MERGES, min_count=2))


def _tekken_vocab() -> list[dict[str, Any]]:
    path = resources.files("mistral_common") / "data" / "tekken_240911.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        {"rank": t["rank"], "token_bytes": t["token_bytes"], "token_str": t["token_str"]}
        for t in data["vocab"][: TEKKEN_VOCAB_SIZE - NUM_SPECIAL_TOKENS]
    ]


def tekken_dict(
    version: TokenizerVersion = "v7", vocabulary: Vocabulary = "tiny"
) -> dict[str, Any]:
    """The content of a Voxtral-style ``tekken.json``."""
    if version not in ("v7", "v11", "v13"):
        raise ValueError(f"tokenizer version must be v7, v11 or v13, not {version!r}")
    if vocabulary == "tiny":
        vocab = _tiny_vocab()
    elif vocabulary == "tekken":
        vocab = _tekken_vocab()
    else:
        raise ValueError(f"vocabulary must be 'tiny' or 'tekken', not {vocabulary!r}")
    return tekken_file(vocab, version)


def tekken_file(vocab: list[dict[str, Any]], version: TokenizerVersion) -> dict[str, Any]:
    """The content of a ``tekken.json`` with ``vocab`` and Voxtral's special tokens, pattern
    and audio section."""
    return {
        "config": {
            "pattern": PATTERN,
            "num_vocab_tokens": len(vocab),
            "default_vocab_size": len(vocab) + NUM_SPECIAL_TOKENS,
            "default_num_special_tokens": NUM_SPECIAL_TOKENS,
            "version": version,
        },
        "vocab": vocab,
        "special_tokens": _special_tokens(),
        "audio": dict(AUDIO_SECTION),
    }


def write_tekken(
    folder: str | Path, version: TokenizerVersion = "v7", vocabulary: Vocabulary = "tiny"
) -> Path:
    """Write ``folder/tekken.json`` (the name mistral-common looks for); return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tekken.json"
    path.write_text(json.dumps(tekken_dict(version, vocabulary), ensure_ascii=False), "utf-8")
    return path
