"""The forced-reply helper makes the real generate() loop produce a chosen reply."""

from __future__ import annotations

from pathlib import Path

import pytest
from mistral_common.experimental.tools import _decode_tool_calls, _split_content_and_tool_calls
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from transformers import AutoProcessor, VoxtralForConditionalGeneration

from assistant.testing.forced import ForcedTokens, ScriptedReplies, reply_tokens

TOOL_CALLS_ID = 9
EOS_ID = 2


def _load(folder: Path):
    model = VoxtralForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    tokenizer = MistralTokenizer.from_file(str(folder / "tekken.json"))
    return model, processor, tokenizer


def _generate(model, processor, forced: ForcedTokens, n: int = 200) -> list[int]:
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Say something"}]}]
    )
    out = model.generate(**inputs, max_new_tokens=n, do_sample=False, logits_processor=[forced])
    return out[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("vocabulary", ["tiny", "tekken"])
def test_forced_text_decodes_to_the_requested_text(tiny_model_factory, vocabulary) -> None:
    """Greedy generation under ForcedTokens decodes to exactly the requested text."""
    model, processor, tokenizer = _load(tiny_model_factory("v7", vocabulary))
    text = "The kitchen lights are on. Ça marche, 日本!"
    generated = _generate(model, processor, ForcedTokens([reply_tokens(tokenizer, text)]))
    assert generated[-1] == EOS_ID
    assert tokenizer.decode(generated) == text


def test_forced_reply_survives_sampling(tiny_model_dir: Path) -> None:
    """Sampling at a high temperature still yields the forced reply."""
    model, processor, tokenizer = _load(tiny_model_dir)
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    )
    forced = ForcedTokens([reply_tokens(tokenizer, "Hello")])
    out = model.generate(
        **inputs, max_new_tokens=20, do_sample=True, temperature=1.5, logits_processor=[forced]
    )
    assert tokenizer.decode(out[0, inputs["input_ids"].shape[1] :].tolist()) == "Hello"


@pytest.mark.parametrize("version", ["v7", "v11", "v13"])
def test_forced_tool_call_decodes_through_mistral_common(tiny_model_factory, version) -> None:
    """A forced tool call, decoded by mistral-common, has the requested name and arguments."""
    model, processor, tokenizer = _load(tiny_model_factory(version))
    call = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}, "id": "a1B2c3D4e"}
    generated = _generate(
        model, processor, ForcedTokens([reply_tokens(tokenizer, "Sure.", [call])])
    )
    assert TOOL_CALLS_ID in generated
    content, calls_tokens = _split_content_and_tool_calls(generated[:-1], TOOL_CALLS_ID)
    calls = _decode_tool_calls(calls_tokens, tokenizer.instruct_tokenizer.tokenizer)
    assert tokenizer.decode(content) == "Sure."
    assert [c.function.name for c in calls] == ["set_light"]
    assert calls[0].function.arguments == '{"room": "kitchen", "state": "on"}'
    if version == "v11":
        assert calls[0].id == "a1B2c3D4e"


def test_scripted_replies_are_consumed_in_order(tiny_model_dir: Path) -> None:
    """Each generate call takes the next scripted reply (text or raw tokens); an empty script
    forces nothing."""
    model, processor, tokenizer = _load(tiny_model_dir)
    script = ScriptedReplies(tokenizer)
    script.say("one")
    script.add(reply_tokens(tokenizer, "two"))
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Count"}]}]
    )
    replies = []
    for _ in range(2):
        processors = script.logits_processors()
        out = model.generate(
            **inputs, max_new_tokens=20, do_sample=False, logits_processor=processors
        )
        replies.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :].tolist()))
    assert replies == ["one", "two"]
    assert script.logits_processors() == []
