"""respond(): streaming, tool calls through the real generate loop, cancellation, errors."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    AudioChunk,
    SystemMessage,
    TextChunk,
    UserMessage,
)
from mistral_common.tokens.tokenizers.audio import Audio
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from transformers import LogitsProcessor

from assistant.audio.io import audio_chunk
from assistant.config import GenerationParams
from assistant.events import ErrorEvent, MalformedToolCall, ResponseDone, TextDelta, ToolCall
from assistant.testing.forced import ForcedTokens, reply_tokens

CALL = {"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}, "id": "a1B2c3D4e"}
LONG_TEXT = "The kitchen lights are on now. " * 8


def _ask(clips: dict[str, Any], text: str = "Please?") -> list[Any]:
    return [UserMessage(content=[audio_chunk(clips["short"]), TextChunk(text=text)])]


def _tokenizer(folder: Path) -> MistralTokenizer:
    return MistralTokenizer.from_file(str(folder / "tekken.json"))


async def _events(stream) -> list[Any]:
    return [event async for event in stream]


class Gate(LogitsProcessor):
    """Forces a reply; at decode step ``at`` it signals ``reached`` and waits for ``go``."""

    def __init__(self, tokens: list[int], at: int) -> None:
        self.forced = ForcedTokens([tokens])
        self.at = at
        self.step = 0
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Wait at the gate, then force the next token."""
        if self.step == self.at:
            self.reached.set()
            if not self.go.wait(timeout=30):
                raise TimeoutError("the test never opened the gate")
        self.step += 1
        return self.forced(input_ids, scores)


@pytest.mark.parametrize("version", ["v7", "v11", "v13"])
async def test_forced_tool_call_round_trips(version, make_worker, script, clips) -> None:
    """A tool call forced through generate comes out with its name, arguments (and v11 id)."""
    worker = make_worker(version, script.logits_processors)
    script.add(reply_tokens(worker.tokenizer, "Turning it on.", [CALL]))
    events = await _events(worker.respond(_ask(clips)))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("set_light", CALL["arguments"])]
    if version in ("v7", "v11"):
        assert calls[0].id == CALL["id"]
    done = events[-1]
    assert isinstance(done, ResponseDone)
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls == tuple(calls)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Turning it on."


async def test_several_calls_in_one_reply(make_worker, script, clips) -> None:
    """Two calls in one reply arrive as two ToolCall events in order."""
    worker = make_worker("v13", script.logits_processors)
    second = {"name": "get_time", "arguments": {"zone": "UTC"}, "id": "Zz9Yy8Xx7"}
    script.add(reply_tokens(worker.tokenizer, None, [CALL, second]))
    done = await worker.respond(_ask(clips)).done()
    assert [c.name for c in done.tool_calls] == ["set_light", "get_time"]
    assert done.text == ""


async def test_truncated_call_is_an_error_event_not_an_exception(
    make_worker, script, clips
) -> None:
    """A call cut off by max_new_tokens ends as MalformedToolCall with finish_reason length."""
    worker = make_worker("v11", script.logits_processors)
    script.add(reply_tokens(worker.tokenizer, None, [CALL]))
    events = await _events(worker.respond(_ask(clips), params=GenerationParams(max_new_tokens=16)))
    bad = [e for e in events if isinstance(e, MalformedToolCall)]
    assert len(bad) == 1 and bad[0].raw_text.startswith("[TOOL_CALLS]set_light[CALL_ID]")
    assert "token limit" in bad[0].reason
    assert events[-1].finish_reason == "length"


async def test_malformed_call_carries_the_raw_text(make_worker, script, clips) -> None:
    """Bad JSON in a generated call becomes MalformedToolCall with the model's text."""
    worker = make_worker("v7", script.logits_processors)
    tekken = worker.tokenizer.instruct_tokenizer.tokenizer
    script.add([9, *tekken.encode('[{"name": "set_light", "arguments": {oops}}]', False, False), 2])
    events = await _events(worker.respond(_ask(clips)))
    (bad,) = [e for e in events if isinstance(e, MalformedToolCall)]
    assert "oops" in bad.raw_text
    assert not [e for e in events if isinstance(e, TextDelta)]


async def test_text_arrives_in_deltas_before_generation_ends(
    make_worker, clips, tiny_model_dir
) -> None:
    """The first delta reaches the caller while the model thread is still generating."""
    gate = Gate(reply_tokens(_tokenizer(tiny_model_dir), LONG_TEXT), at=20)
    worker = make_worker("v7", lambda batch_size: [gate])
    stream = worker.respond(_ask(clips))
    first = await stream.__anext__()
    assert isinstance(first, TextDelta)
    assert not gate.go.is_set()  # generation is parked mid-reply: the delta came early
    gate.go.set()
    rest = await _events(stream)
    deltas = [first, *(e for e in rest if isinstance(e, TextDelta))]
    assert len(deltas) > 10
    assert "".join(d.text for d in deltas) == LONG_TEXT.strip()


async def test_multibyte_text_is_never_split(make_worker, script, clips) -> None:
    """Characters spanning several tokens arrive whole: no replacement characters in deltas."""
    worker = make_worker("v7", script.logits_processors)
    text = "Ça marche: 日本語, ünïcödé, 🎉!"
    script.add(reply_tokens(worker.tokenizer, text))
    events = await _events(worker.respond(_ask(clips)))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


async def test_cancel_stops_within_one_decode_step(make_worker, clips, tiny_model_dir) -> None:
    """cancel() during a long reply ends it at the next step with finish_reason cancelled."""
    gate = Gate(reply_tokens(_tokenizer(tiny_model_dir), LONG_TEXT * 10), at=30)
    worker = make_worker("v7", lambda batch_size: [gate])
    stream = worker.respond(_ask(clips), params=GenerationParams(max_new_tokens=2000))
    assert await asyncio.to_thread(gate.reached.wait, 30)
    stream.cancel()
    gate.go.set()
    done = await stream.done()
    assert done.finish_reason == "cancelled"
    assert done.usage.generated_tokens <= 32


async def test_worker_serves_again_after_a_cancel(make_worker, script, clips) -> None:
    """A cancelled request frees the thread: the next request completes normally."""
    worker = make_worker("v7", script.logits_processors)
    first = worker.respond(_ask(clips))
    first.cancel()
    script.add(reply_tokens(worker.tokenizer, "Hello"))
    assert (await first.done()).finish_reason == "cancelled"
    assert (await worker.respond(_ask(clips)).done()).text == "Hello"


async def test_exception_in_the_model_thread_is_an_error_event(make_worker, clips) -> None:
    """A failure inside generate reaches the caller as ErrorEvent, then ResponseDone(error)."""

    class Boom(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom in the model thread")

    worker = make_worker("v7", lambda batch_size: [Boom()])
    events = await _events(worker.respond(_ask(clips)))
    assert isinstance(events[0], ErrorEvent)
    assert events[0].code == "model_error" and "boom" in events[0].message
    assert isinstance(events[-1], ResponseDone) and events[-1].finish_reason == "error"


async def test_context_overflow_fails_before_the_model_runs(make_worker) -> None:
    """A prompt longer than the context is refused with context_overflow; nothing is computed."""
    worker = make_worker("v7")
    huge = UserMessage(content=" ".join(f"w{i}" for i in range(20_000)))
    events = await _events(worker.respond([huge]))
    assert isinstance(events[0], ErrorEvent) and events[0].code == "context_overflow"
    assert worker.engine.stats.generate_calls == 0
    assert worker.engine.stats.encoder_calls == 0


async def test_a_conversation_ending_with_the_assistant_is_a_bad_request(make_worker) -> None:
    """Messages mistral-common cannot encode give ErrorEvent(bad_request)."""
    worker = make_worker("v7")
    messages = [UserMessage(content="Hi"), AssistantMessage(content="Hello")]
    events = await _events(worker.respond(messages))
    assert isinstance(events[0], ErrorEvent) and events[0].code == "bad_request"


async def test_done_reports_usage_and_timings(make_worker, script, clips) -> None:
    """ResponseDone carries audio seconds, token counts and time to first token."""
    worker = make_worker("v7", script.logits_processors)
    script.add(reply_tokens(worker.tokenizer, "Hello"))
    done = await worker.respond(_ask(clips)).done()
    assert done.usage.audio_tokens == 375
    assert 1.0 < done.usage.audio_s < 4.0
    assert done.usage.prompt_tokens > 375
    assert done.usage.generated_tokens == len(reply_tokens(worker.tokenizer, "Hello"))
    assert done.timings.time_to_first_token_s is not None
    assert 0 < done.timings.time_to_first_token_s <= done.timings.total_s


async def test_instructions_below_v13_ride_in_the_first_user_turn(make_worker, clips) -> None:
    """v7 cannot take a system prompt with audio: the worker still answers, instructions inline."""
    worker = make_worker("v7")
    messages = [SystemMessage(content="You are terse."), *_ask(clips)]
    done = await worker.respond(messages, params=GenerationParams(max_new_tokens=2)).done()
    assert done.finish_reason in ("stop", "length")
    assert worker.count_tokens(messages) == worker.count_tokens(
        [UserMessage(content=[TextChunk(text="You are terse."), *_ask(clips)[0].content])]
    )


@pytest.mark.parametrize(("language", "expected"), [(None, "fr"), ("de", "de")])
async def test_transcribe_reports_the_language(
    language, expected, make_worker, script, clips
) -> None:
    """The announced lang:xx is returned (and stripped) when no language was asked for."""
    worker = make_worker("v7", script.logits_processors)
    tekken = worker.tokenizer.instruct_tokenizer.tokenizer
    said = "Bonjour tout le monde"
    script.add([*tekken.encode("lang:fr", False, False), 34, *tekken.encode(said, False, False), 2])
    result = await worker.transcribe(clips["short"], language=language)
    assert result.text == said
    assert result.language == expected


async def test_requests_batched_together_keep_their_own_token_limits(
    make_worker, clips, tiny_model_dir
) -> None:
    """Two requests that share one batched generate each stop at their own max_new_tokens."""
    tokens = reply_tokens(_tokenizer(tiny_model_dir), LONG_TEXT)
    gate = Gate(tokens, at=0)
    calls: list[int] = []

    def factory(batch_size: int) -> list[Any]:
        calls.append(batch_size)
        return [gate] if len(calls) == 1 else [ForcedTokens([tokens] * batch_size)]

    worker = make_worker("v7", factory)
    greedy = GenerationParams(max_new_tokens=4, temperature=0.0)
    first = worker.respond(_ask(clips), params=greedy)
    assert await asyncio.to_thread(gate.reached.wait, 30)  # the model thread is busy: both wait
    short = worker.respond(_ask(clips, "Short?"), params=greedy)
    long = worker.respond(_ask(clips, "Long?"), params=GenerationParams(30, temperature=0.0))
    gate.go.set()
    await first.done()
    short_done, long_done = await short.done(), await long.done()
    assert calls == [1, 2]  # the two waiting requests ran as one batch
    assert (short_done.usage.generated_tokens, short_done.finish_reason) == (4, "length")
    assert (long_done.usage.generated_tokens, long_done.finish_reason) == (30, "length")


async def test_an_empty_clip_fails_alone_in_its_batch(make_worker, script, clips) -> None:
    """A clip without samples is a clear bad_request; the conversation batched with it answers."""
    worker = make_worker("v7", script.logits_processors)
    script.add(reply_tokens(worker.tokenizer, "Hello"))
    empty = AudioChunk.from_audio(Audio(np.zeros(0, dtype=np.float32), 16000, format="wav"))
    streams = worker.respond_batch([[UserMessage(content=[empty])], _ask(clips)])
    failed, answered = await _events(streams[0]), await streams[1].done()
    assert isinstance(failed[0], ErrorEvent) and failed[0].code == "bad_request"
    assert "no samples" in failed[0].message
    assert answered.text == "Hello"


async def test_an_unforeseen_failure_while_building_a_prompt_keeps_the_worker_alive(
    make_worker, script, clips
) -> None:
    """An unexpected exception in prompt building is a model_error; the next request answers."""

    class BrokenTools:
        def __iter__(self) -> Any:
            raise KeyError("tools that cannot be listed")

    worker = make_worker("v7", script.logits_processors)
    broken = worker.respond(_ask(clips), tools=BrokenTools())  # type: ignore[arg-type]
    events = await asyncio.wait_for(_events(broken), timeout=30)
    assert isinstance(events[0], ErrorEvent) and events[0].code == "model_error"
    assert "KeyError" in events[0].message
    script.add(reply_tokens(worker.tokenizer, "Hello"))
    done = await asyncio.wait_for(worker.respond(_ask(clips)).done(), timeout=30)
    assert done.text == "Hello"


class _Gate(LogitsProcessor):
    """Holds the model thread at the first decode step until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.release.wait(30)
        return scores


async def test_requests_beyond_max_waiting_fail_at_once_as_overloaded(make_worker) -> None:
    """While the model thread is busy, up to ``max_waiting`` requests wait (and are counted);
    the next one is refused at once with ``overloaded``; the waiting ones are served after."""
    gate = _Gate()
    worker = make_worker("v7", lambda n: [gate], max_waiting=2)
    ask = [UserMessage(content="Hello")]
    params = GenerationParams(max_new_tokens=2, temperature=0.0)
    running = worker.respond(ask, params=params)
    assert await asyncio.to_thread(gate.entered.wait, 30)
    assert worker.waiting_requests == 0  # the running one was taken up
    waiting = [worker.respond(ask, params=params) for _ in range(2)]
    assert worker.waiting_requests == 2
    refused = await _events(worker.respond(ask, params=params))
    assert isinstance(refused[0], ErrorEvent) and refused[0].code == "overloaded"
    assert "limit 2" in refused[0].message
    assert isinstance(refused[-1], ResponseDone) and refused[-1].finish_reason == "error"
    gate.release.set()
    for stream in [running, *waiting]:
        assert (await stream.done()).finish_reason in ("stop", "length")
    assert worker.waiting_requests == 0


def test_worker_options_are_checked() -> None:
    from assistant.config import ModelSettings

    with pytest.raises(ValueError, match="max_waiting"):
        ModelSettings(max_waiting=0)
    with pytest.raises(ValueError, match="max_batch"):
        ModelSettings(max_batch=0)
