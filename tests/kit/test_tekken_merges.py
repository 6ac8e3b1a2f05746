"""The byte-pair merge learner shared by the kit's tiny vocabulary and the demo's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from mistral_common.tokens.tokenizers.tekken import Tekkenizer

from assistant.testing.tekken import learn_merges, merges_vocab, tekken_file


def test_the_most_frequent_pair_is_merged_first_counting_each_word_by_its_count() -> None:
    merges = learn_merges([(b"ab", 1), (b"cd", 3)], max_merges=10, min_count=1)
    assert merges == [b"cd", b"ab"]


def test_merges_build_on_earlier_merges_and_stop_at_the_limit() -> None:
    words = [(b"abc", 5), (b"abd", 4)]
    assert learn_merges(words, max_merges=10, min_count=1) == [b"ab", b"abc", b"abd"]
    assert learn_merges(words, max_merges=1, min_count=1) == [b"ab"]


def test_pairs_seen_fewer_than_min_count_times_are_not_merged() -> None:
    assert learn_merges([(b"ab", 2), (b"cd", 1)], max_merges=10, min_count=2) == [b"ab"]
    assert learn_merges([(b"ab", 1)], max_merges=10, min_count=2) == []


def test_ties_go_to_the_first_pair_seen_or_to_the_largest() -> None:
    words = [(b"ab", 1), (b"cd", 1)]
    assert learn_merges(words, max_merges=1, min_count=1, ties="first") == [b"ab"]
    assert learn_merges(words, max_merges=1, min_count=1, ties="largest") == [b"cd"]


def test_a_learned_vocabulary_makes_a_tekken_file_that_encodes_with_the_merges(
    tmp_path: Path,
) -> None:
    merges = learn_merges([(b" kitchen", 4), (b" light", 4)], max_merges=100, min_count=2)
    vocab = merges_vocab(merges)
    assert [t["rank"] for t in vocab] == list(range(256 + len(merges)))
    path = tmp_path / "tekken.json"
    path.write_text(json.dumps(tekken_file(vocab, "v7")), "utf-8")
    tekken = Tekkenizer.from_file(path)
    assert len(tekken.encode(" kitchen light", bos=False, eos=False)) == 2
    assert len(tekken.encode(" kettle", bos=False, eos=False)) > 2  # still encodes, in pieces
