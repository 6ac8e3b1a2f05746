"""Property: whatever sequence of inputs, replies, failures, cuts and budget shrinking happens,
the history encodes through mistral-common and every tool call has exactly one result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    TextChunk,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import Function, Tool
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.audio.io import audio_chunk
from assistant.conversation.history import (
    History,
    Round,
    UserItem,
    delivered_rounds,
    reply_messages,
)
from assistant.events import ToolCall, ToolResult
from assistant.model.prompting import place_instructions

TOOLS = [
    Tool(function=Function(name=name, description=name, parameters={"type": "object"}))
    for name in ("set_light", "read_thermostat")
]
CLIP = audio_chunk(np.zeros(800, dtype=np.float32))

user_input = st.tuples(st.just("user"), st.sampled_from(["text", "audio", "both"]))
round_spec = st.tuples(
    st.text(max_size=12),
    st.lists(st.sampled_from(["ok", "failed", "never ran"]), max_size=3),
)
response = st.tuples(
    st.just("response"),
    st.lists(round_spec, min_size=1, max_size=3),
    st.none() | st.integers(min_value=0, max_value=30),
)
shrink = st.tuples(st.just("fit"), st.integers(min_value=0, max_value=60))
transcribe = st.tuples(st.just("transcribe"), st.integers(min_value=0, max_value=20))
operations = st.lists(st.one_of(user_input, response, shrink, transcribe), max_size=14)


def check(history: History, tokenizer: MistralTokenizer, version: str) -> None:
    """The history is a valid request once the next user message arrives; calls pair up."""
    messages = history.messages
    if messages and not isinstance(messages[-1], (UserMessage, ToolMessage)):
        messages = [*messages, UserMessage(content="next")]
    if messages:
        placed = place_instructions([SystemMessage(content="Be brief."), *messages], version)
        tokenizer.encode_chat_completion(ChatCompletionRequest(messages=placed, tools=TOOLS))
    answered: dict[str, int] = {}
    open_calls: list[str] = []
    previous = None
    for message in history.messages:
        assert not (isinstance(message, UserMessage) and isinstance(previous, UserMessage))
        if isinstance(message, AssistantMessage):
            assert not open_calls
            open_calls = [c.id for c in message.tool_calls or ()]
        elif isinstance(message, ToolMessage):
            open_calls.remove(message.tool_call_id)
            answered[message.tool_call_id] = answered.get(message.tool_call_id, 0) + 1
        previous = message
    assert not open_calls
    assert all(count == 1 for count in answered.values())


def make_rounds(specs, next_id) -> list[Round]:
    rounds = []
    for text, outcomes in specs:
        rnd = Round(text=text)
        for outcome in outcomes:
            call = ToolCall(f"call{next_id():05d}", "set_light", {"room": "hall"})
            rnd.calls.append(call)
            if outcome != "never ran":
                content = '{"ok": true}' if outcome == "ok" else '{"error": "boom"}'
                rnd.results[call.id] = ToolResult(call.id, call.name, content, outcome == "ok")
        rounds.append(rnd)
    return rounds


@pytest.mark.parametrize("version", ["v7", "v13"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_history_stays_valid(tiny_model_factory, version, ops) -> None:
    """After every operation the history encodes and each call has exactly one result."""
    tokenizer = MistralTokenizer.from_file(str(Path(tiny_model_factory(version)) / "tekken.json"))
    history = History()
    counter = iter(range(10**6))
    items: list[UserItem] = []
    for op in ops:
        if op[0] == "user":
            chunks = {"text": (TextChunk(text="hi"),), "audio": (CLIP,)}.get(
                op[1], (CLIP, TextChunk(text="and this"))
            )
            items.append(UserItem(f"item{next(counter)}", chunks, audio_s=0.05))
            history.add_user(items[-1])
        elif op[0] == "response" and history.turns:
            rounds = make_rounds(op[1], lambda: next(counter))
            full = "".join(r.text for r in rounds)
            delivered = None if op[2] is None else full[: op[2]]
            history.add_replies(reply_messages(delivered_rounds(rounds, delivered)))
        elif op[0] == "fit" and history.turns:
            history.fit(lambda m: sum(len(str(x)) for x in m) // 100, op[1])
        elif op[0] == "transcribe" and items:
            items[op[1] % len(items)].transcript = "turn on the light"
        check(history, tokenizer, version)
