"""Every usage pattern of the Voxtral documentation runs on the tiny model via transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, VoxtralForConditionalGeneration

from assistant.testing.speech import synthesize, write_wav

AUDIO_TOKEN_ID = 24
BEGIN_AUDIO_ID = 25
TRANSCRIBE_ID = 34
TOKENS_PER_30_S = 375


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir: Path):
    model = VoxtralForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("clips")
    speech = synthesize("Turn on the kitchen lights please")
    long = np.concatenate([speech, np.zeros(16000 * 33, dtype=np.int16)])  # 35 s: two windows
    return {
        "short": write_wav(str(folder / "short.wav"), speech),
        "other": write_wav(str(folder / "other.wav"), synthesize("What time is it")),
        "long": write_wav(str(folder / "long.wav"), long),
    }


def _generate(model, inputs, n: int = 6) -> torch.Tensor:
    out = model.generate(**inputs, max_new_tokens=n, do_sample=False)
    return out[:, inputs["input_ids"].shape[1] :]


def _user(*parts: dict) -> dict:
    return {"role": "user", "content": list(parts)}


def test_audio_and_text(model_and_processor, clips) -> None:
    """One clip and a question: 375 [AUDIO] tokens, one 30 s window of 128 mel bins."""
    model, processor = model_and_processor
    inputs = processor.apply_chat_template(
        [_user({"type": "audio", "path": clips["short"]}, {"type": "text", "text": "What?"})]
    )
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == TOKENS_PER_30_S
    assert int((inputs["input_ids"] == BEGIN_AUDIO_ID).sum()) == 1
    assert tuple(inputs["input_features"].shape) == (1, 128, 3000)
    assert _generate(model, inputs).shape == (1, 6)


def test_long_clip_costs_one_window_per_started_30_s(model_and_processor, clips) -> None:
    """A 35 s clip costs 2 x 375 tokens and two encoder windows."""
    model, processor = model_and_processor
    inputs = processor.apply_chat_template([_user({"type": "audio", "path": clips["long"]})])
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == 2 * TOKENS_PER_30_S
    assert tuple(inputs["input_features"].shape) == (2, 128, 3000)
    assert _generate(model, inputs, 2).shape == (1, 2)


def test_two_audios_and_text(model_and_processor, clips) -> None:
    """Two clips in one turn: two [BEGIN_AUDIO] blocks of 375 tokens each."""
    model, processor = model_and_processor
    inputs = processor.apply_chat_template(
        [
            _user(
                {"type": "audio", "path": clips["short"]},
                {"type": "audio", "path": clips["other"]},
                {"type": "text", "text": "Compare them."},
            )
        ]
    )
    assert int((inputs["input_ids"] == BEGIN_AUDIO_ID).sum()) == 2
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == 2 * TOKENS_PER_30_S
    assert _generate(model, inputs).shape == (1, 6)


def test_multi_turn(model_and_processor, clips) -> None:
    """User audio, assistant reply, user audio + text."""
    model, processor = model_and_processor
    conversation = [
        _user({"type": "audio", "path": clips["short"]}, {"type": "text", "text": "Summary?"}),
        {"role": "assistant", "content": "The user wants the lights on."},
        _user({"type": "audio", "path": clips["other"]}, {"type": "text", "text": "And now?"}),
    ]
    inputs = processor.apply_chat_template(conversation)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(3) == 2  # two [INST]
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == 2 * TOKENS_PER_30_S
    assert _generate(model, inputs).shape == (1, 6)


def test_text_only(model_and_processor) -> None:
    """A text-only conversation has no audio tokens and no features."""
    model, processor = model_and_processor
    inputs = processor.apply_chat_template([_user({"type": "text", "text": "Hello there"})])
    assert "input_features" not in inputs
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == 0
    assert _generate(model, inputs).shape == (1, 6)


def test_audio_only(model_and_processor, clips) -> None:
    """A turn with only a clip."""
    model, processor = model_and_processor
    inputs = processor.apply_chat_template([_user({"type": "audio", "path": clips["other"]})])
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == TOKENS_PER_30_S
    assert _generate(model, inputs).shape == (1, 6)


def test_batch_of_conversations(model_and_processor, clips) -> None:
    """Two conversations of different lengths in one batch, left-padded."""
    model, processor = model_and_processor
    batch = [
        [_user({"type": "audio", "path": clips["short"]}, {"type": "text", "text": "Hi"})],
        [_user({"type": "text", "text": "A longer text-only question than the other one"})],
    ]
    inputs = processor.apply_chat_template(batch)
    assert inputs["input_ids"].shape[0] == 2
    assert int(inputs["attention_mask"][1].sum()) < inputs["input_ids"].shape[1]
    assert int(inputs["attention_mask"][1][0]) == 0  # left padding
    assert _generate(model, inputs).shape == (2, 6)


@pytest.mark.parametrize("language", ["en", None])
def test_transcription_request(model_and_processor, clips, language) -> None:
    """Transcription mode ends the prompt with [TRANSCRIBE], after lang:xx when given."""
    model, processor = model_and_processor
    kwargs = {"language": language} if language else {}
    inputs = processor.apply_transcription_request(audio=clips["short"], model_id="tiny", **kwargs)
    ids = inputs["input_ids"][0].tolist()
    assert ids[-1] == TRANSCRIBE_ID
    decoded = processor.tokenizer.decode(ids[-8:])
    assert ("lang:en" in decoded) == (language == "en")
    assert int((inputs["input_ids"] == AUDIO_TOKEN_ID).sum()) == TOKENS_PER_30_S
    assert _generate(model, inputs).shape == (1, 6)
