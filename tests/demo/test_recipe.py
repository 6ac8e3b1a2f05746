"""The demo's training data means what the product will do with the model's output."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.model.toolcall_parser import ToolCallParser
from training import grammar, tokenizer
from training.conversations import Clip, ExampleMaker


@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> MistralTokenizer:
    """A Tekken tokenizer learned on a small corpus of the demo's texts."""
    folder = tmp_path_factory.mktemp("tekken")
    path = tokenizer.write_tekken(folder, tokenizer.learn_merges(tokenizer.corpus(150)))
    return MistralTokenizer.from_file(str(path))


@pytest.fixture(scope="module")
def maker(demo_tokenizer: MistralTokenizer) -> ExampleMaker:
    """Examples built with the shipped tools.yaml."""
    return ExampleMaker(demo_tokenizer, str(Path(__file__).parents[2] / "tools.yaml"))


def _clips(count: int, part: str = "train") -> list[Clip]:
    return [
        Clip(i, u.text, u.kind, list(u.calls))
        for i, u in enumerate(grammar.utterances(part, count, 7))
    ]


def test_call_targets_parse_into_the_expected_tool_calls(maker: ExampleMaker) -> None:
    """The product's tool-call parser reads every training target as the utterance's calls."""
    rng = random.Random(0)
    for clip in [c for c in _clips(60) if c.calls]:
        example = maker.chat(clip, rng)
        parser = ToolCallParser.for_tokenizer(maker.tokenizer)
        for token in example.tokens[example.target_start : -1].tolist():
            list(parser.feed(token))
        list(parser.finish(truncated=False))
        got = [grammar.Call(c.name, dict(c.arguments)).key() for c in parser.tool_calls]
        assert got == [c.key() for c in clip.calls], clip.text


def test_prompts_are_the_products_prompts(maker: ExampleMaker) -> None:
    """An example's prompt is what the product's prompt builder makes for that conversation."""
    from mistral_common.protocol.instruct.messages import UserMessage

    example = maker.chat(_clips(1)[0], random.Random(1))
    expected = maker.prompts.chat([UserMessage(content=[maker.placeholder])], maker.tools)
    if example.target_start == len(expected.tokens):  # no instructions drawn for this one
        assert example.tokens[: example.target_start].tolist() == expected.tokens


def test_the_tools_text_is_hundreds_of_tokens_not_thousands(maker: ExampleMaker) -> None:
    """With merges learned on the demo's texts the shipped tools cost under 700 tokens."""
    from mistral_common.protocol.instruct.messages import TextChunk, UserMessage

    with_tools = maker.prompts.chat([UserMessage(content=[TextChunk(text="hi")])], maker.tools)
    without = maker.prompts.chat([UserMessage(content=[TextChunk(text="hi")])], None)
    assert len(with_tools.tokens) - len(without.tokens) < 700


def test_held_out_phrasings_never_occur_in_training() -> None:
    """No template id is shared between the training and held-out phrasings."""
    train = {u.template for u in grammar.utterances("train", 3000, 1)}
    held = {u.template for u in grammar.utterances("heldout", 1000, 2)}
    assert train and held and not train & held


def test_replies_after_results_are_fixed_sentences() -> None:
    """The confirmation is built from the call and the result the model reads."""
    call = grammar.Call("set_light", {"room": "living_room", "state": "on"})
    assert grammar.reply_after(call, '{"published": true}') == "The living room light is on."
    denied = '{"error": "cancelled", "reason": "the user did not confirm"}'
    door = grammar.Call("unlock_door", {"door": "back"})
    assert grammar.reply_after(door, denied) == "Okay, the back door stays locked."


def test_a_finished_stage_resumes_when_asked_for_more_steps(tmp_path: Path) -> None:
    """``--set speak.steps=N`` above the steps a stage finished with extends it."""
    from training.loop import Stage

    stage = Stage(tmp_path, "speak")
    assert not stage.done_at(3000)
    stage.finish({"step": 3000})
    assert stage.done_at(3000) and stage.done_at(2000)
    assert not stage.done_at(5500)


def test_training_prompts_list_the_tools_exactly_as_the_product_does() -> None:
    """The tools of the examples are tools.yaml's, in its own key order (the order is part of
    the prompt): what the product sends, less any installed plugin's tools."""
    import json

    from assistant.tools.loader import load_tools
    from training.conversations import declared_tools

    shipped = Path(__file__).parents[2] / "tools.yaml"
    declared = [t.model_dump() for t in declared_tools(shipped).mistral_tools()]
    names = {t["function"]["name"] for t in declared}
    product = [t.model_dump() for t in load_tools(shipped).mistral_tools()]
    product = [t for t in product if t["function"]["name"] in names]
    assert json.dumps(declared) == json.dumps(product)
