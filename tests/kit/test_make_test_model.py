"""The test kit writes checkpoints that transformers and mistral-common load offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from transformers import AutoProcessor, VoxtralForConditionalGeneration

from assistant.cli import main
from assistant.testing.tekken import SPECIAL_TOKENS

pytestmark = pytest.mark.system  # writes and loads real checkpoints, some through the CLI


@pytest.mark.parametrize("vocabulary", ["tiny", "tekken"])
@pytest.mark.parametrize("version", ["v7", "v11", "v13"])
def test_cli_writes_a_loadable_checkpoint(tmp_path: Path, version: str, vocabulary: str) -> None:
    """`make-test-model` output loads with from_pretrained and AutoProcessor, offline."""
    folder = tmp_path / "m"
    status = main(
        ["make-test-model", str(folder), "--tokenizer-version", version, "--vocabulary", vocabulary]
    )
    assert status == 0
    model = VoxtralForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    assert model.config.audio_token_id == 24
    assert processor.feature_extractor.feature_size == 128
    tokenizer = MistralTokenizer.from_file(str(folder / "tekken.json"))
    assert tokenizer.instruct_tokenizer.tokenizer.version.value == version
    assert model.config.text_config.vocab_size == tokenizer.instruct_tokenizer.tokenizer.n_words


def test_special_token_layout_matches_voxtral(tiny_model_dir: Path) -> None:
    """Every Voxtral special token sits at its documented id."""
    tokenizer = MistralTokenizer.from_file(str(tiny_model_dir / "tekken.json")).instruct_tokenizer
    for token_id, name in SPECIAL_TOKENS.items():
        assert tokenizer.tokenizer.get_special_token(name) == token_id


def test_audio_section_matches_voxtral(tiny_model_dir: Path) -> None:
    """The audio section has Voxtral's rates, mel layout and 30 s chunking."""
    audio = json.loads((tiny_model_dir / "tekken.json").read_text())["audio"]
    assert audio["sampling_rate"] == 16000
    assert audio["frame_rate"] == 12.5
    assert audio["chunk_length_s"] == 30.0
    assert audio["audio_encoding_config"] == {
        "num_mel_bins": 128,
        "hop_length": 160,
        "window_size": 400,
    }


def test_same_seed_builds_the_same_weights(tmp_path: Path) -> None:
    """The builder is deterministic from its seed."""
    from assistant.testing.tiny_model import build_tiny_model

    a = VoxtralForConditionalGeneration.from_pretrained(build_tiny_model(tmp_path / "a", seed=3))
    b = VoxtralForConditionalGeneration.from_pretrained(build_tiny_model(tmp_path / "b", seed=3))
    c = VoxtralForConditionalGeneration.from_pretrained(build_tiny_model(tmp_path / "c", seed=4))
    wa, wb, wc = (m.lm_head.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
