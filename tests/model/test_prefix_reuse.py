"""Fast turns: prefix reuse, the clip embedding cache, eviction, batching, static cache + compile.

Every speed-up must leave greedy outputs token-identical to the plain path.
"""

from __future__ import annotations

from typing import Any

import pytest
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    TextChunk,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies, reply_tokens
from tests.model.conftest import Recorder

GREEDY = GenerationParams(max_new_tokens=6, temperature=0.0)
TOOLS = [
    Tool(
        function=Function(
            name="set_light",
            description="Switch a room's light.",
            parameters={
                "type": "object",
                "properties": {"room": {"type": "string"}, "state": {"type": "string"}},
                "required": ["room", "state"],
            },
        )
    )
]
CALL = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}, "id": "a1B2c3D4e"}


class ScriptThenRecord:
    """Scripted replies first (when any are queued), then a recorder of every step."""

    def __init__(self) -> None:
        self.script = ScriptedReplies()
        self.recorders: list[Recorder] = []

    def __call__(self, batch_size: int) -> list[Any]:
        self.recorders.append(Recorder())
        return [*self.script.logits_processors(batch_size), self.recorders[-1]]

    def generated(self) -> list[list[int]]:
        return [r.generated() for r in self.recorders]


async def _conversation(worker: ModelWorker, spy: ScriptThenRecord, clips, cid: str) -> None:
    """Four model calls: a forced tool call, its follow-up, then two free spoken turns."""
    history: list[Any] = [
        UserMessage(content=[audio_chunk(clips["short"]), TextChunk(text="Lights?")])
    ]
    spy.script.add(reply_tokens(worker.tokenizer, None, [CALL]))
    long_enough = GenerationParams(max_new_tokens=200, temperature=0.0)
    done = await worker.respond(
        history, tools=TOOLS, params=long_enough, conversation_id=cid
    ).done()
    (call,) = done.tool_calls
    history += [
        AssistantMessage(
            tool_calls=[
                ToolCall(
                    id=call.id, function=FunctionCall(name=call.name, arguments=call.arguments)
                )
            ]
        ),
        ToolMessage(tool_call_id=call.id, name=call.name, content='{"ok": true}'),
    ]
    for clip in (None, "other", "third"):
        if clip is not None:
            history.append(UserMessage(content=[audio_chunk(clips[clip])]))
        done = await worker.respond(history, tools=TOOLS, params=GREEDY, conversation_id=cid).done()
        history.append(AssistantMessage(content=done.text or "Done."))


@pytest.mark.parametrize("version", ["v7", "v13"])
async def test_prefix_reuse_gives_the_same_tokens(version, make_worker, clips) -> None:
    """A multi-turn conversation with audio and tool calls decodes identically with reuse off."""
    results = {}
    for reuse in (True, False):
        spy = ScriptThenRecord()
        worker = make_worker(version, spy, prefix_reuse=reuse)
        await _conversation(worker, spy, clips, "kitchen")
        results[reuse] = spy.generated()
        if reuse:
            assert worker.engine.stats.reused_tokens > 3 * 375  # earlier turns were not redone
    assert results[True] == results[False]
    assert len(results[True]) == 4


async def test_each_clip_is_encoded_once(make_worker, clips) -> None:
    """Three clips over four turns: three encoder runs, however many turns follow."""
    spy = ScriptThenRecord()
    worker = make_worker("v7", spy)
    await _conversation(worker, spy, clips, "kitchen")
    assert worker.engine.stats.encoded_clips == 3
    assert worker.engine.stats.encoder_calls == 3


async def test_a_tiny_budget_evicts_but_stays_correct(make_worker, clips) -> None:
    """With a 1-byte budget every cache is evicted after each call; outputs do not change."""
    outputs = []
    for budget in (1, 4 * 1024**3):
        spy = ScriptThenRecord()
        worker = make_worker("v13", spy, cache_budget_bytes=budget)
        await _conversation(worker, spy, clips, "kitchen")
        outputs.append(spy.generated())
        if budget == 1:
            assert worker.engine.store.evictions > 0
            assert worker.engine.store.used_bytes == 0
            assert worker.engine.stats.reused_tokens == 0
    assert outputs[0] == outputs[1]


async def test_least_recently_used_conversation_is_evicted_first(make_worker, clips) -> None:
    """Under a budget for about two conversations, the oldest one goes."""
    worker = make_worker("v7")
    ask = [UserMessage(content=[TextChunk(text="Hello there")])]
    await worker.respond(ask, params=GREEDY, conversation_id="a").done()
    one_conversation = worker.engine.store.used_bytes
    worker.engine.store.budget_bytes = int(2.5 * one_conversation)
    for cid in ("b", "a", "c"):
        await worker.respond(ask, params=GREEDY, conversation_id=cid).done()
    store = worker.engine.store
    assert store.conversation("b") is None
    assert store.conversation("a") is not None and store.conversation("c") is not None


def _batch(clips) -> list[list[Any]]:
    return [
        [UserMessage(content=[audio_chunk(clips["short"]), TextChunk(text="Hi")])],
        [UserMessage(content=[TextChunk(text="A longer text-only question, please.")])],
        [UserMessage(content=[audio_chunk(clips["other"]), audio_chunk(clips["third"])])],
    ]


async def test_batched_requests_equal_one_by_one(make_worker, clips) -> None:
    """respond_batch runs one generate and one encoder call, with one-by-one's tokens."""
    spy = ScriptThenRecord()
    worker = make_worker("v7", spy)
    streams = worker.respond_batch(_batch(clips), params=GREEDY)
    for stream in streams:
        await stream.done()
    (batched,) = spy.recorders
    assert worker.engine.stats.encoder_calls == 1
    singles = []
    for conversation in _batch(clips):
        alone = ScriptThenRecord()
        await make_worker("v7", alone).respond(conversation, params=GREEDY).done()
        singles.append(alone.generated()[0])
    assert [batched.generated(row) for row in range(3)] == singles


async def test_batched_first_turns_leave_reusable_caches(make_worker, clips) -> None:
    """After a batched turn, each conversation's next turn reuses its own cache, correctly."""
    outputs = []
    for reuse in (True, False):
        spy = ScriptThenRecord()
        worker = make_worker("v7", spy, prefix_reuse=reuse)
        conversations = _batch(clips)
        ids = ["a", "b", "c"]
        streams = worker.respond_batch(conversations, params=GREEDY, conversation_ids=ids)
        for conversation, stream in zip(conversations, streams, strict=True):
            done = await stream.done()
            conversation += [
                AssistantMessage(content=done.text or "Done."),
                UserMessage(content=[TextChunk(text="And then?")]),
            ]
        for conversation, cid in zip(conversations, ids, strict=True):
            await worker.respond(conversation, params=GREEDY, conversation_id=cid).done()
        if reuse:
            assert worker.engine.stats.reused_tokens > 2 * 375
        outputs.append(
            [spy.recorders[0].generated(row) for row in range(3)]
            + [r.generated() for r in spy.recorders[1:]]
        )
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("backend", [None, "eager"])
async def test_static_cache_and_compile_give_the_same_tokens(backend, make_worker, clips) -> None:
    """Static KV caches (and a torch.compile'd decode step) decode like dynamic caches."""
    outputs = []
    for options in ({}, {"static_cache_tokens": 4096, "compile_backend": backend}):
        spy = ScriptThenRecord()
        worker = make_worker("v7", spy, **options)
        await _conversation(worker, spy, clips, "kitchen")
        outputs.append(spy.generated())
        if backend is not None and options:
            assert hasattr(worker.engine.model, "_compiled_call")  # warmed up at load
    assert outputs[0] == outputs[1]


async def test_a_conversation_outgrowing_its_static_cache_starts_over(make_worker, clips) -> None:
    """A turn that no longer fits the static cache is prefilled afresh (into a dynamic cache)
    and decodes exactly like dynamic caches all along."""
    outputs = []
    for options in ({}, {"static_cache_tokens": 1000}):
        spy = ScriptThenRecord()
        worker = make_worker("v7", spy, **options)
        await _conversation(worker, spy, clips, "kitchen")  # three clips: over 1,100 positions
        outputs.append(spy.generated())
        if options:
            cache = worker.engine.store.conversation("kitchen").cache
            assert type(cache).__name__ == "DynamicCache"
    assert outputs[0] == outputs[1]


async def test_forget_drops_the_conversation_cache(make_worker) -> None:
    """forget() frees a conversation's cache; its next turn prefills again."""
    worker = make_worker("v7")
    ask = [UserMessage(content=[TextChunk(text="Hello there")])]
    await worker.respond(ask, params=GREEDY, conversation_id="a").done()
    worker.forget("a")
    await worker.respond(ask, params=GREEDY, conversation_id="b").done()  # runs after forget
    assert worker.engine.store.conversation("a") is None


@pytest.mark.parametrize("static", [False, True])
def test_chunk_mask_prefill_is_bit_identical(static, make_worker) -> None:
    """The prefill after a cached prefix, with the engine's own additive mask, equals
    transformers' own masking bit for bit (dynamic cache, and a static cache's unused slots)."""
    import torch
    from transformers import DynamicCache, StaticCache

    engine = make_worker("v7").engine
    language_model = engine.model.model.language_model
    torch.manual_seed(3)
    past, new = 700, 120
    embeds = torch.randn(1, past + new, engine.model.config.text_config.hidden_size)

    def chunk(own_mask: bool) -> torch.Tensor:
        cache: Any = (
            StaticCache(config=engine.model.config, max_cache_len=1024)
            if static
            else DynamicCache()
        )
        with torch.inference_mode():
            language_model(inputs_embeds=embeds[:, :past], cache=cache, use_cache=True)
            mask = engine._chunk_mask(past, new, cache) if own_mask else None
            assert (mask is not None) == own_mask
            return language_model(
                inputs_embeds=embeds[:, past:], attention_mask=mask, cache=cache, use_cache=True
            ).last_hidden_state

    ours, theirs = chunk(True), chunk(False)
    assert torch.equal(ours, theirs)
    # past keys visible, the new block causal
    broken = engine._chunk_mask(past, new, DynamicCache())
    assert broken is not None and broken.shape == (1, 1, new, past + new)
    assert torch.isinf(broken[0, 0, 0, past + 1]) and broken[0, 0, 0, past] == 0
