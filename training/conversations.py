"""Training examples: prompts and targets encoded by mistral-common exactly as inference does.

Every example is a conversation the product really builds (``assistant.prompting.PromptBuilder``
with the tools of ``tools.yaml`` rendered by the real registry, instructions placed where the
model worker places them, history as ``assistant.dialogue`` keeps it: calls with their ids,
tool results as the registry serializes them), followed by the reply the model should write,
encoded as the model writes it (``assistant.testing.forced.reply_tokens``: a tool call without
an id, then ``</s>``). The loss covers only the reply.

Audio is a placeholder in the prompt: mistral-common gives every clip under 30 s the same
``[BEGIN_AUDIO]`` + 375 ``[AUDIO]`` tokens, and training scatters the clip's embeddings there,
as the model does. ``Example.clips`` names the clips in the order of their ``[AUDIO]`` runs.

Kinds of example:

- ``call``: a spoken turn -> a tool call (or, for anything else, what the model can do);
- ``reply``: a spoken turn, its call and the tool's result -> the short confirmation;
- ``transcribe``: transcription mode, with and without ``lang:en``;
- ``multi``: one or two earlier turns in the history (with their audio), then ``call`` or
  ``reply`` for the newest turn;
- ``text``: the same with a typed user message instead of audio.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.grammar import CAPABILITIES, REMINDER_TASKS, TIMER_LABELS, Call, reply_after

INSTRUCTIONS = (
    "Be brief.",
    "You are a helpful voice assistant. Answer in one short sentence.",
    "You are a smart home assistant. Keep your answers short.",
    "Answer briefly and use the tools when they help.",
    "You are a friendly assistant in a smart home.",
)
KIND_WEIGHTS = {"call": 0.38, "transcribe": 0.2, "reply": 0.16, "multi": 0.16, "text": 0.10}

EXTRA_TOOLS: list[dict[str, Any]] = [
    {
        "name": "run_scene",
        "description": "Activate a Home Assistant scene.",
        "parameters": {
            "type": "object",
            "properties": {"scene": {"type": "string", "enum": ["movie_night", "good_morning"]}},
            "required": ["scene"],
        },
    },
    {
        "name": "echo",
        "description": "Repeat a text back (a plugin's example tool).",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
    {
        "name": "set_fan_speed",
        "description": "Set the speed of the ceiling fan.",
        "parameters": {
            "type": "object",
            "properties": {"speed": {"type": "integer", "minimum": 0, "maximum": 3}},
            "required": ["speed"],
        },
    },
]
"""Tools a plugin might add: prompts with them teach that more tools may be offered."""


@dataclass
class Example:
    """One training sequence: prompt + reply tokens, where the reply starts, its clips."""

    tokens: np.ndarray
    """int32 token ids (a numpy array: tens of thousands of examples stay small)."""
    target_start: int
    clips: list[int]
    kind: str


@dataclass
class Clip:
    """What the example builder needs to know about a synthesized clip."""

    index: int
    text: str
    kind: str
    calls: list[Call]


def call_id(rng: random.Random) -> str:
    """A 9-character tool-call id, as the dialogue makes them."""
    return "".join(rng.choices(string.ascii_letters + string.digits, k=9))


def without_plugins(tools_file: str | Path, folder: str | Path) -> Path:
    """A copy of ``tools_file`` in ``folder`` that turns installed plugins off, in the file's
    own order (the schemas' key order is part of the prompt)."""
    import yaml

    data = yaml.safe_load(Path(tools_file).read_text(encoding="utf-8"))
    data["plugins"] = "none"
    path = Path(folder) / "tools.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def declared_tools(tools_file: str | Path) -> Any:
    """The tools ``tools_file`` declares, without installed plugins: the data must not depend
    on what happens to be installed where it is built (plugin tools come from
    ``EXTRA_TOOLS``)."""
    from assistant.tools.loader import load_tools

    with tempfile.TemporaryDirectory() as folder:
        return load_tools(without_plugins(tools_file, folder))


class ExampleMaker:
    """Builds examples with the product's prompt builder and the shipped tools."""

    def __init__(self, tokenizer: Any, tools_file: str = "tools.yaml") -> None:
        from mistral_common.protocol.instruct.messages import AudioChunk
        from mistral_common.tokens.tokenizers.audio import Audio

        from assistant.model.prompting import PromptBuilder

        self.tokenizer = tokenizer
        self.prompts = PromptBuilder(tokenizer)
        self.registry = declared_tools(tools_file)
        self.tools = self.registry.mistral_tools()
        silence = np.zeros(1600, dtype=np.float32)
        self.placeholder = AudioChunk.from_audio(Audio(silence, 16000, format="wav"))

    # --- pieces --------------------------------------------------------------------------

    def tool_variant(self, rng: random.Random, needed: Sequence[str]) -> list[Any]:
        """The shipped tools (mostly), else reordered, with plugin tools, or a subset."""
        from mistral_common.protocol.instruct.tool_calls import Function, Tool

        roll = rng.random()
        if roll < 0.85:
            return self.tools
        tools = list(self.tools)
        if roll < 0.92:
            extra = rng.sample(EXTRA_TOOLS, rng.randint(1, len(EXTRA_TOOLS)))
            tools += [Tool(function=Function(**t)) for t in extra]
        else:
            keep = [t for t in tools if t.function.name in needed or rng.random() < 0.6]
            tools = keep or tools
        rng.shuffle(tools)
        return tools

    def result(self, call: Call, rng: random.Random) -> str:
        """The JSON the registry hands the model for ``call`` (successes and failures)."""
        roll = rng.random()
        if roll < 0.08:
            return json.dumps({"error": rng.choice([
                "ConnectionError: cannot reach the MQTT broker at localhost:1883: "
                "ConnectionRefusedError: [Errno 111] Connection refused",
                "TimeoutError: the tool did not finish within 10 s",
                "the MQTT broker did not acknowledge the message",
            ])})  # fmt: skip
        if call.name in ("set_light", "set_thermostat", "unlock_door"):
            if call.name == "unlock_door" and roll < 0.4:
                return json.dumps({"error": "cancelled", "reason": "the user did not confirm"})
            _, handler, _ = self.registry._tools[call.name]
            topic, payload = handler.render(dict(call.arguments))
            content = {"published": True, "topic": topic, "payload": payload.decode("utf-8")}
            return json.dumps(content, ensure_ascii=False)
        now = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=rng.randrange(365 * 86400))
        if call.name == "set_timer":
            label = call.arguments.get("label", "timer")
            seconds = float(call.arguments["duration_s"])
            fires = now + dt.timedelta(seconds=seconds)
            content = {
                "label": label,
                "duration_s": seconds,
                "fires_at": fires.strftime("%H:%M:%S"),
            }
            return json.dumps(content, ensure_ascii=False)
        if call.name == "cancel_timer":
            label = call.arguments.get("label", "timer")
            if roll < 0.3:
                others = rng.sample([*TIMER_LABELS, *REMINDER_TASKS], rng.randint(0, 2))
                running = f" (running: {', '.join(others)})" if others else ""
                return json.dumps(
                    {"error": f"LookupError: no timer called {label!r} is running{running}"},
                    ensure_ascii=False,
                )
            return json.dumps({"cancelled": label}, ensure_ascii=False)
        if call.name == "get_time":
            zone = call.arguments.get("timezone") or rng.choice(["UTC", "CET", "EST", "BST"])
            offset = rng.choice(["+00:00", "+01:00", "-05:00", "+09:00"])
            content = {
                "time": now.strftime("%H:%M"),
                "date": now.date().isoformat(),
                "weekday": now.strftime("%A"),
                "timezone": zone,
                "iso": now.strftime("%Y-%m-%dT%H:%M:%S") + offset,
            }
            return json.dumps(content, ensure_ascii=False)
        return json.dumps({"ok": True})

    def reply_tokens(self, text: str | None, calls: Sequence[Call] = ()) -> list[int]:
        """The reply as the model writes it (``[TOOL_CALLS][...]</s>`` or ``text</s>``)."""
        from assistant.testing.forced import reply_tokens

        return reply_tokens(self.tokenizer, text, [c.as_dict() for c in calls])

    def _user(self, clip: Clip | None, text: str | None = None) -> Any:
        from mistral_common.protocol.instruct.messages import TextChunk, UserMessage

        if clip is None:
            return UserMessage(content=[TextChunk(text=text or "")])
        return UserMessage(content=[self.placeholder])

    def _called(self, calls: Sequence[Call], rng: random.Random) -> tuple[list[Any], str]:
        """The assistant's calls and the tools' results as messages, and the reply that
        confirms them."""
        from mistral_common.protocol.instruct.messages import AssistantMessage, ToolMessage
        from mistral_common.protocol.instruct.tool_calls import FunctionCall, ToolCall

        made = [
            ToolCall(
                id=call_id(rng), function=FunctionCall(name=c.name, arguments=dict(c.arguments))
            )
            for c in calls
        ]
        messages: list[Any] = [AssistantMessage(content=None, tool_calls=made)]
        replies = []
        for c, mc in zip(calls, made, strict=True):
            content = self.result(c, rng)
            messages.append(ToolMessage(content=content, tool_call_id=mc.id, name=c.name))
            replies.append(reply_after(c, content))
        return messages, " ".join(replies)

    def _turn(self, clip: Clip, rng: random.Random, typed: bool) -> tuple[list[Any], list[int]]:
        """A finished earlier turn (user, calls with results, reply) as history messages."""
        from mistral_common.protocol.instruct.messages import AssistantMessage

        user = self._user(None, clip.text) if typed else self._user(clip)
        clips = [] if typed else [clip.index]
        if not clip.calls:
            return [user, AssistantMessage(content=CAPABILITIES)], clips
        called, reply = self._called(clip.calls, rng)
        return [user, *called, AssistantMessage(content=reply)], clips

    # --- examples --------------------------------------------------------------------------

    def transcription(self, clip: Clip, language: str | None) -> Example:
        """Transcription mode: the prompt ends ``[TRANSCRIBE]``; the reply is the transcript."""
        prompt = self.prompts.transcription(self.placeholder, language)
        target = self.reply_tokens(clip.text)
        tokens = np.array(prompt.tokens + target, dtype=np.int32)
        return Example(tokens, len(prompt.tokens), [clip.index], "transcribe")

    def chat(
        self,
        clip: Clip,
        rng: random.Random,
        history: Sequence[Clip] = (),
        with_result: bool = False,
        typed: bool = False,
        kind: str = "call",
    ) -> Example:
        """The newest turn is ``clip``: predict its call, or (``with_result``) the reply after
        it."""
        from mistral_common.protocol.instruct.messages import SystemMessage

        messages: list[Any] = []
        clips: list[int] = []
        for earlier in history:
            turn, turn_clips = self._turn(earlier, rng, typed=typed or rng.random() < 0.1)
            messages += turn
            clips += turn_clips
        messages.append(self._user(None, clip.text) if typed else self._user(clip))
        if not typed:
            clips.append(clip.index)
        if rng.random() < 0.15:
            messages.insert(0, SystemMessage(content=rng.choice(INSTRUCTIONS)))
        tools = self.tool_variant(rng, [c.name for c in clip.calls])
        if with_result and clip.calls:
            called, reply = self._called(clip.calls, rng)
            messages += called
            target = self.reply_tokens(reply)
        elif clip.calls:
            target = self.reply_tokens(None, clip.calls)
        else:
            target = self.reply_tokens(CAPABILITIES)
        prompt = self.prompts.chat(messages, tools)
        return Example(
            np.array(prompt.tokens + target, dtype=np.int32), len(prompt.tokens), clips, kind
        )

    def sample(self, clips: Sequence[Clip], clip: Clip, rng: random.Random) -> Example:
        """One example around ``clip`` of a kind drawn by ``KIND_WEIGHTS``."""
        kind = rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()))[0]
        if kind == "transcribe":
            return self.transcription(clip, rng.choice(["en", None]))
        if kind == "reply" and clip.calls:
            return self.chat(clip, rng, with_result=True, kind="reply")
        if kind == "multi":
            history = [rng.choice(clips) for _ in range(rng.choice([1, 1, 2]))]
            history = [h for h in history if h.kind == "command" or rng.random() < 0.3]
            result = bool(clip.calls) and rng.random() < 0.35
            return self.chat(clip, rng, history=history, with_result=result, kind="multi")
        if kind == "text":
            result = bool(clip.calls) and rng.random() < 0.3
            return self.chat(clip, rng, with_result=result, typed=True, kind="text")
        return self.chat(clip, rng, kind="call")
