"""The model thread survives what a model or a caller can throw at it, and its caches stay true.

Each test here reproduces a failure found in review: a reply that crashes the tool-call parser,
a generation failing half-way through a reused cache, two requests of one conversation in one
batch, a cancelled transcription, batches over ``max_batch``, clip embeddings that pin a whole
batch's encoder output, clips encoded again although the reused prefix holds them, and sampling
that silently picked up transformers' default top-k.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch
from mistral_common.protocol.instruct.messages import AssistantMessage, TextChunk, UserMessage
from transformers import LogitsProcessor

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.events import MalformedToolCall, TextDelta
from assistant.model.engine import Job, Sampling
from assistant.model.kv_store import CacheStore
from assistant.model.prompting import EncodedPrompt
from tests.model.conftest import Recorder, Recorders

GREEDY = GenerationParams(max_new_tokens=6, temperature=0.0)


class _Boom(LogitsProcessor):
    """Fails the generation it is given to."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


async def test_a_deeply_nested_tool_call_is_malformed_and_the_thread_goes_on(
    make_worker, script
) -> None:
    """A looping "[[[[..." reply after [TOOL_CALLS] used to raise RecursionError on the model
    thread, killing it: this reply and every later request waited forever."""
    worker = make_worker("v7", script.logits_processors)
    tekken = worker.tokenizer.instruct_tokenizer.tokenizer
    bracket = tekken.encode("[", False, False)
    script.add([tekken.get_special_token("[TOOL_CALLS]"), *bracket * 1500, tekken.eos_id])
    long = GenerationParams(max_new_tokens=1600, temperature=0.0)
    events = [e async for e in worker.respond([UserMessage(content="hi")], params=long)]
    (bad,) = [e for e in events if isinstance(e, MalformedToolCall)]
    assert "nested too deeply" in bad.reason
    done = await asyncio.wait_for(worker.respond([UserMessage(content="again")]).done(), 30)
    assert done.finish_reason in ("stop", "length")


async def test_a_failed_turn_leaves_no_stale_cache(make_worker, clips) -> None:
    """Turn 2 fails half-way (after its prefill changed the cache in place); turn 3 must still
    decode exactly like prefix reuse off."""
    outputs = []
    for reuse in (True, False):
        recorders: list[Recorder] = []

        def factory(batch_size: int, recorders: list[Recorder] = recorders) -> list[Any]:
            recorders.append(Recorder())
            return [_Boom()] if len(recorders) == 2 else [recorders[-1]]

        worker = make_worker("v7", factory, prefix_reuse=reuse)
        first = [UserMessage(content=[audio_chunk(clips["short"]), TextChunk(text="Lights?")])]
        one = await worker.respond(first, params=GREEDY, conversation_id="c").done()
        two = await worker.respond(
            [UserMessage(content="Something else entirely")], params=GREEDY, conversation_id="c"
        ).done()
        assert two.finish_reason == "error"
        third = [*first, AssistantMessage(content=one.text), UserMessage(content="And now?")]
        three = await worker.respond(third, params=GREEDY, conversation_id="c").done()
        assert three.finish_reason != "error"
        outputs.append((recorders[0].generated(), recorders[2].generated()))
    assert outputs[0] == outputs[1]


async def test_one_conversation_twice_in_a_batch_equals_one_by_one(make_worker, clips) -> None:
    """Two waiting requests of one conversation: the second must not reuse the cache the first
    is changing (it failed with a size mismatch, and took the first request's result with it)."""
    base = [UserMessage(content=[audio_chunk(clips["short"])])]
    follow = [UserMessage(content="What did I say?")]
    results = []
    for batched in (True, False):
        spy = Recorders()
        worker = make_worker("v7", spy)
        await worker.respond(base, params=GREEDY, conversation_id="x").done()
        # The first crops the cache to a few tokens; the second extends the full one.
        asks = [follow, [*base, AssistantMessage(content="ok"), *follow]]
        if batched:
            streams = worker.respond_batch(asks, params=GREEDY, conversation_ids=["x", "x"])
            dones = [await stream.done() for stream in streams]
        else:
            dones = [
                await worker.respond(ask, params=GREEDY, conversation_id="x").done() for ask in asks
            ]
        assert all(done.finish_reason != "error" for done in dones)
        results.append(
            sorted(
                tuple(r.generated(row))
                for r in spy.calls[1:]
                for row in range(r.prompt.shape[0] if r.prompt is not None else 0)
            )
        )
    assert results[0] == results[1]


async def test_cancelling_a_transcription_stops_its_generation(make_worker, clips) -> None:
    """A caller that stops waiting for transcribe() stops the model too, instead of leaving it
    decoding 1024 tokens for nobody while everyone else waits."""
    steps = threading.Event()
    count = [0]

    class Slow(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            count[0] += 1
            steps.set()
            threading.Event().wait(0.02)
            return scores

    worker = make_worker("v7", lambda n: [Slow()])
    task = asyncio.create_task(worker.transcribe(clips["short"], max_new_tokens=1000))
    assert await asyncio.to_thread(steps.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await worker.respond([UserMessage(content="next")], params=GREEDY).done()
    assert count[0] < 20 + GREEDY.max_new_tokens


async def test_batches_never_exceed_max_batch(make_worker) -> None:
    """respond_batch of 10 conversations with max_batch=4: generate sees at most 4 rows."""
    sizes: list[int] = []
    worker = make_worker("v7", lambda n: sizes.append(n) or [], max_batch=4)
    asks = [[UserMessage(content=f"Question {i}?")] for i in range(10)]
    streams = worker.respond_batch(asks, params=GREEDY)
    for stream in streams:
        assert (await stream.done()).finish_reason in ("stop", "length")
    assert sizes and max(sizes) <= 4 and sum(sizes) == 10


async def test_stored_clip_embeddings_hold_only_their_own_memory(make_worker, clips) -> None:
    """Clips encoded together are stored as copies, not views of the batch's encoder output."""
    worker = make_worker("v7")
    asks = [[UserMessage(content=[audio_chunk(clips[n])])] for n in ("short", "other")]
    for stream in worker.respond_batch(asks, params=GREEDY):
        await stream.done()
    stored = [e for (kind, _), (e, _) in worker.engine.store._entries.items() if kind == "clip"]
    assert len(stored) == 2
    for embeddings in stored:
        held = embeddings.untyped_storage().nbytes()
        assert held == embeddings.numel() * embeddings.element_size()


async def test_clips_inside_the_reused_prefix_are_not_encoded_again(make_worker, clips) -> None:
    """With the clip evicted but the conversation's cache kept, a text-only turn 2 reuses the
    prefix and needs no encoder call."""
    worker = make_worker("v7")
    first = [UserMessage(content=[audio_chunk(clips["short"])])]
    one = await worker.respond(first, params=GREEDY, conversation_id="c").done()
    store = worker.engine.store
    for key in [k for k in store._entries if k[0] == "clip"]:
        del store._entries[key]
    encoded = worker.engine.stats.encoded_clips
    second = [*first, AssistantMessage(content=one.text), UserMessage(content="Thanks")]
    done = await worker.respond(second, params=GREEDY, conversation_id="c").done()
    assert done.finish_reason != "error"
    assert worker.engine.stats.reused_tokens > 375
    assert worker.engine.stats.encoded_clips == encoded


def test_sampling_has_no_hidden_top_k(make_worker) -> None:
    """transformers fills a None top_k with 50 when sampling: the engine switches it off."""
    engine = make_worker("v7").engine
    job = Job(EncodedPrompt([1, 2], []), Sampling(4, 0.7, 0.9), lambda t: None, threading.Event())
    final, _ = engine.model._prepare_generation_config(engine.generation_config([job]))
    processors = engine.model._get_logits_processor(
        generation_config=final,
        input_ids_seq_length=2,
        encoder_input_ids=torch.ones(1, 2, dtype=torch.long),
        prefix_allowed_tokens_fn=None,
        logits_processor=[],
        device="cpu",
    )
    names = [type(p).__name__ for p in processors]
    assert "TopKLogitsWarper" not in names
    assert "TopPLogitsWarper" in names and "TemperatureLogitsWarper" in names


def test_an_entry_over_the_whole_budget_does_not_wipe_the_store() -> None:
    store = CacheStore(budget_bytes=1000)
    for i in range(3):
        store.put_clip(bytes([i]), torch.zeros(75))  # 300 bytes each
    store.put_clip(b"huge", torch.zeros(1250))  # 5000 bytes: can never fit
    store.enforce_budget()
    assert store.clip(b"huge") is None
    assert all(store.clip(bytes([i])) is not None for i in range(3))


async def test_streamed_text_of_the_nested_reply_is_not_lost(make_worker, script) -> None:
    """Text before a malformed call still streams (the call's failure is its own event)."""
    worker = make_worker("v7", script.logits_processors)
    tekken = worker.tokenizer.instruct_tokenizer.tokenizer
    text = tekken.encode("Sure.", False, False)
    call = [tekken.get_special_token("[TOOL_CALLS]"), *tekken.encode("[", False, False) * 1200]
    script.add([*text, *call, tekken.eos_id])
    long = GenerationParams(max_new_tokens=1400, temperature=0.0)
    events = [e async for e in worker.respond([UserMessage(content="hi")], params=long)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip() == "Sure."
    assert any(isinstance(e, MalformedToolCall) for e in events)
