"""A cancelled speculative request leaves the conversation's KV cache valid and reusable."""

from __future__ import annotations

from typing import Any

from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.events import TextDelta
from assistant.testing.forced import reply_tokens
from tests.model.test_prefix_reuse import ScriptThenRecord

GREEDY = GenerationParams(max_new_tokens=6, temperature=0.0)


async def _discard_then_commit(worker: Any, spy: ScriptThenRecord, clips: Any) -> int:
    """A turn, a speculation cancelled mid-reply, then the longer committed utterance; the
    prompt tokens the last request reused."""
    history: list[Any] = [UserMessage(content=[audio_chunk(clips["short"])])]
    done = await worker.respond(history, params=GREEDY, conversation_id="c").done()
    history.append(AssistantMessage(content=done.text or "Done."))
    tokens = reply_tokens(worker.tokenizer, "A speculative reply that is cut short.", [])
    gate = spy.script.held_reply(tokens, after_tokens=3)
    early = [*history, UserMessage(content=[audio_chunk(clips["other"])])]
    stream = worker.respond(early, params=GREEDY, conversation_id="c", speculative=True)
    try:
        assert isinstance(await anext(stream), TextDelta)  # the model is held mid-reply
        stream.cancel()
    finally:
        gate.set()
    assert (await stream.done()).finish_reason == "cancelled"
    whole = [
        *history,
        UserMessage(content=[audio_chunk(clips["other"]), audio_chunk(clips["third"])]),
    ]
    before = worker.engine.stats.reused_tokens
    await worker.respond(whole, params=GREEDY, conversation_id="c").done()
    return worker.engine.stats.reused_tokens - before


async def test_a_discarded_speculation_keeps_a_valid_reusable_cache(make_worker, clips) -> None:
    """After a cancelled speculation the longer turn reuses the conversation's prefix and
    decodes exactly as without any cache."""
    outputs, reused = [], []
    for reuse in (True, False):
        spy = ScriptThenRecord()
        worker = make_worker("v7", spy, prefix_reuse=reuse)
        reused.append(await _discard_then_commit(worker, spy, clips))
        outputs.append(spy.generated()[-1])
    assert reused[0] > 375 and reused[1] == 0  # the first clip's window was not prefilled again
    assert outputs[0] == outputs[1]
