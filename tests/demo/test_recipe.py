"""The demo's training data means what the product will do with the model's output."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

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


def test_every_training_module_imports() -> None:
    """``python -m training`` loads its stages only when it runs them: a broken import would
    otherwise show only hours into a run."""
    import importlib
    import pkgutil

    import training

    for module in pkgutil.iter_modules(training.__path__):
        importlib.import_module(f"training.{module.name}")


def test_the_shared_tools_prefix_gives_the_same_loss_as_whole_prompts(
    maker: ExampleMaker,
) -> None:
    """Stage 2 runs the tools text once per batch and shares its keys and values: exact, not
    an approximation (and the same reply tokens count), audio trimmed or not."""
    import torch

    from training.model import DemoSpec, build_model
    from training.stage_speak import AUDIO_TOKENS, batch_loss, prefix_key

    clips = _clips(60)
    rng = random.Random(5)
    groups: dict[tuple[int, ...], list[Any]] = {}
    for clip in clips:
        example = maker.chat(clip, rng)
        groups.setdefault(prefix_key(example), []).append(example)
    batch = max((g for key, g in groups.items() if key), key=len)[:4]
    assert len(batch) >= 3
    spec = DemoSpec(text_hidden=64, text_intermediate=128)
    vocab = maker.tokenizer.instruct_tokenizer.tokenizer.n_words
    model = build_model(vocab, spec, seed=0).eval()
    audio = torch.randn(
        len(clips), AUDIO_TOKENS, spec.text_hidden, generator=torch.Generator().manual_seed(0)
    )
    keep = {clip.index: 40 for clip in clips}
    with torch.no_grad():
        for trimmed in (None, keep):
            shared, counted = batch_loss(model, batch, audio, True, trimmed)
            whole, counted_whole = batch_loss(model, batch, audio, False, trimmed)
            assert counted == counted_whole > 0
            assert abs(float(shared) - float(whole)) < 1e-5


def _bare(template: str) -> str:
    return template.lstrip("^").lower()


def test_more_phrasings_are_none_of_the_grammars_templates() -> None:
    """The extra training phrasings never repeat a template of the one split (so neither a
    held-out phrasing), and ``devnew`` speaks only those of them that ``more`` never uses."""
    from training.more_phrasings import MORE

    grammar_templates = {_bare(t) for ts in grammar.INTENTS.values() for t in ts}
    assert not {_bare(t) for ts in MORE.values() for t in ts} & grammar_templates
    more = {u.template for u in grammar.utterances("more", 4000, 1)}
    devnew = {u.template for u in grammar.utterances("devnew", 2000, 2)}
    held = {u.template for u in grammar.utterances("heldout", 2000, 3)}
    new_in_devnew = {t for t in devnew if "/more" in t}
    assert new_in_devnew and not new_in_devnew & more
    assert any("/more" in t for t in more) and not more & held
    with pytest.raises(ValueError, match="no phrasing set"):
        grammar.templates("light_on", "tarin")


FINGERPRINTS = {"train": "da1aacd02db1", "dev": "24df26ddb59e", "heldout": "0fbbf68f861b"}


def test_the_original_splits_do_not_change_with_the_new_ones() -> None:
    """``train``, ``dev`` and ``heldout`` draw the same clips as before ``more`` and ``devnew``
    existed (the shipped weights' recipe still reproduces them): fingerprints of their first
    renderings, taken before the change."""
    import hashlib
    import json
    from dataclasses import asdict

    from training.audio_data import renderings

    def fingerprint(part: str, count: int) -> str:
        rows = json.dumps([asdict(r) for r in renderings(part, count)])
        return hashlib.md5(rows.encode()).hexdigest()[:12]

    assert {p: fingerprint(p, 300) for p in ("train", "dev", "heldout")} == FINGERPRINTS


@pytest.mark.parametrize(
    ("setting", "message"),
    [('train_parts=["tarin"]', "no training split 'tarin'"),
     ('train_parts=["more"]', "more_clips is 0")],
)  # fmt: skip
def test_a_wrong_training_split_is_refused_before_any_synthesis(
    tmp_path: Path, setting: str, message: str
) -> None:
    """A misspelt split or one with no clips stops ``data`` with a clear message, nothing built."""
    from training.__main__ import main

    with pytest.raises(SystemExit, match=message):
        main(["data", "--run", str(tmp_path / "run"), "--data", str(tmp_path / "data"),
              "--set", setting])  # fmt: skip
    assert not (tmp_path / "data").exists()


def _fake_split(folder: Path, part: str, clips: int) -> None:
    """Chunk files as ``build_split`` writes them, clip ``i`` saying ``"{part} {i}"``."""
    import json

    import numpy as np

    from training.audio_data import CHUNK

    out = folder / part
    out.mkdir(parents=True)
    for n, start in enumerate(range(0, clips, CHUNK)):
        index = range(start, min(start + CHUNK, clips))
        np.savez(
            out / f"chunk_{n:05d}.npz",
            pcm=np.zeros(len(index), np.int16), pcm_lengths=np.ones(len(index), np.int64),
            feats=np.zeros((128, 2 * len(index)), np.float16),
            feat_lengths=np.full(len(index), 2, np.int64),
            floors=np.array(index, np.float32),
            meta=json.dumps([{"text": f"{part} {i}"} for i in index]),
        )  # fmt: skip


def test_a_run_trains_on_the_clips_it_asks_for_and_no_more(tmp_path: Path) -> None:
    """A data folder built for more clips than a run asks for (an earlier, larger run) gives
    the run its first ``train_clips`` clips, then those of the next split: the same clips
    whatever else the folder holds. Too few clips is a clear error."""
    import argparse

    from training.__main__ import _train_split
    from training.audio_data import CHUNK

    _fake_split(tmp_path, "train", 3 * CHUNK)
    _fake_split(tmp_path, "more", CHUNK)
    args = argparse.Namespace(
        data=tmp_path, train_parts=["train", "more"], train_clips=CHUNK + 5, more_clips=10,
        heldout_clips=0, dev_clips=0, devnew_clips=0,
    )  # fmt: skip
    split = _train_split(args)
    texts = [m["text"] for m in split.meta]
    assert texts == [f"train {i}" for i in range(CHUNK + 5)] + [f"more {i}" for i in range(10)]
    assert len(split.feats) == len(split.floors) == len(texts)
    assert list(split.floors[CHUNK : CHUNK + 5]) == list(range(CHUNK, CHUNK + 5))

    args.more_clips = CHUNK + 1
    with pytest.raises(ValueError, match=f"more: {CHUNK} clips .* {CHUNK + 1} asked for"):
        _train_split(args)
