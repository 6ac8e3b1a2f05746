"""A user's input, the state of one running response, and how its tool calls run.

``ToolRunner`` starts server tools through the registry the moment the model emits them
(concurrently, each as a named task), hands client tools to the connected client once the
model's round is over (all of that round's together) and waits for their output (with a timeout
from that moment), and holds back ``confirm`` tools until the user answers. Started tools are
never cancelled: an interrupted response still waits for them, so their side effects are
always recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mistral_common.protocol.instruct.chunk import TextChunk
from mistral_common.protocol.instruct.tool_calls import Function, Tool

from assistant.audio.io import audio_chunk, load_audio
from assistant.conversation.history import (
    TOOL_NAME_PATTERN,
    Round,
    UserItem,
    cancelled_result,
    common_prefix,
)
from assistant.conversation.metrics import TurnClock
from assistant.events import (
    SAMPLE_RATE_HZ,
    ClientToolRequested,
    DialogueEvent,
    TextDelta,
    ToolCall,
    ToolResult,
    ToolStarted,
    Utterance,
)
from assistant.model.backend import ResponseStream
from assistant.tools import ToolRegistry

log = logging.getLogger(__name__)


def error_result(call: ToolCall, message: str, started_s: float) -> ToolResult:
    """A failed result whose JSON content the model can read."""
    content = json.dumps({"error": message}, ensure_ascii=False)
    duration_s = time.monotonic() - started_s
    return ToolResult(call.id, call.name, content, ok=False, duration_s=duration_s, error=message)


def parse_client_tools(tools: Sequence[Mapping[str, Any]]) -> dict[str, Tool]:
    """OpenAI function-tool dicts (flat Realtime style or nested) as mistral-common tools."""
    parsed: dict[str, Tool] = {}
    for index, entry in enumerate(tools):
        if not isinstance(entry, Mapping) or entry.get("type", "function") != "function":
            raise ValueError(f"client tool {index}: expected a function tool object")
        function = entry.get("function", entry)
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
            raise ValueError(
                f"client tool {index}: the name must match {TOOL_NAME_PATTERN.pattern}"
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, Mapping):
            raise ValueError(f"client tool {name!r}: parameters must be a JSON Schema object")
        description = function.get("description") or ""
        parsed[name] = Tool(
            function=Function(name=name, description=str(description), parameters=dict(parameters))
        )
    return parsed


@dataclass(eq=False)
class UserInput:
    """A user input with what the dialogue needs beyond the history (samples, timing)."""

    item: UserItem
    samples: np.ndarray | None
    text: str | None
    speech_end_s: float | None
    committed_s: float


def user_input(
    audio: np.ndarray | Utterance | None, text: str | None, speech_end_s: float | None
) -> UserInput:
    """What the user said and/or typed as a new history item (``AudioError`` for bad audio)."""
    if audio is None and not text:
        raise ValueError("a user turn needs audio or text")
    committed_s = time.monotonic()
    chunks: list[Any] = []
    samples = None
    if audio is not None:
        samples = load_audio(audio)
        chunks.append(audio_chunk(samples))
    if text:
        chunks.append(TextChunk(text=text))
    audio_s = 0.0 if samples is None else len(samples) / SAMPLE_RATE_HZ
    item = UserItem(f"item_{uuid.uuid4().hex[:16]}", tuple(chunks), audio_s=audio_s)
    return UserInput(item, samples, text or None, speech_end_s, committed_s)


def clock_for(inputs: list[UserInput]) -> TurnClock:
    """The metrics clock of a response to ``inputs``: it starts at the newest one's speech end."""
    last = inputs[-1] if inputs else None
    return TurnClock(
        speech_end_s=last.speech_end_s if last else None,
        committed_s=last.committed_s if last else time.monotonic(),
        audio_s=sum(i.item.audio_s for i in inputs),
    )


@dataclass(eq=False)
class ClientCall:
    """A call for the client, waiting for its output."""

    call: ToolCall
    output: asyncio.Future[str]
    started_s: float
    """When the call was made; once handed out, when that happened (its timeout runs from
    there)."""


@dataclass(eq=False)
class ResponseState:
    """Everything one running response has produced so far."""

    emit: Callable[[DialogueEvent], None]
    inputs: list[UserInput]
    clock: TurnClock
    rounds: list[Round] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    """Every text delta sent, in order (the reply as the user received it)."""
    calls: list[ToolCall] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    client_calls: list[ClientCall] = field(default_factory=list)
    confirm_calls: list[ToolCall] = field(default_factory=list)
    stream: ResponseStream | None = None
    transcripts: asyncio.Task[None] | None = None
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    delivered_text: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    turn_done_sent: bool = False

    def say(self, text: str) -> None:
        """Send reply text to the user."""
        self.spoken.append(text)
        self.clock.text_delta()
        self.emit(TextDelta(text))

    def record(self, rnd: Round, result: ToolResult) -> None:
        """Keep a call's result and report it."""
        rnd.results[result.call_id] = result
        self.results.append(result)
        self.clock.tool_finished(result)
        self.emit(result)

    def reply_text(self) -> str:
        """What the user received of the reply (cut to the delivered text when interrupted)."""
        text = "".join(self.spoken)
        if self.interrupted.is_set() and self.delivered_text is not None:
            text = common_prefix(text, self.delivered_text)
        return text


class ToolRunner:
    """Runs the tool calls of responses: server tools, client tools, held ``confirm`` tools."""

    def __init__(self, tools: ToolRegistry | None, conversation_id: str) -> None:
        self.tools = tools
        self.conversation_id = conversation_id
        """Handed to every tool call, so that what a tool leaves running (a timer) stays ours."""
        self.client_tools: dict[str, Tool] = {}
        self._waiting: dict[str, ClientCall] = {}

    def set_client_tools(self, tools: Sequence[Mapping[str, Any]]) -> None:
        """Replace the client's tools; ``ValueError`` for a bad one or a server tool's name."""
        parsed = parse_client_tools(tools)
        clashes = sorted(name for name in parsed if self.tools is not None and name in self.tools)
        if clashes:
            raise ValueError(f"client tools {clashes} have the names of server tools")
        self.client_tools = parsed

    def mistral_tools(self) -> list[Tool]:
        """Every tool the model may call, server tools first."""
        tools = self.tools.mistral_tools() if self.tools is not None else []
        return tools + list(self.client_tools.values())

    def description(self, name: str) -> str:
        """The server tool's description (for confirmation questions)."""
        spec = self.tools.get(name) if self.tools is not None else None
        return spec.description if spec is not None else ""

    def provide_output(self, call_id: str, output: str) -> None:
        """Deliver a client tool's output; ``ValueError`` if no call ``call_id`` is waiting."""
        waiting = self._waiting.get(call_id)
        if waiting is None or waiting.output.done():
            raise ValueError(f"no client tool call {call_id!r} is waiting for output")
        if not isinstance(output, str):
            raise ValueError("a client tool's output must be a string (JSON text preferred)")
        waiting.output.set_result(output)

    def start(self, r: ResponseState, rnd: Round, call: ToolCall) -> None:
        """Begin ``call``: run a server tool, ask the client, or hold a ``confirm`` tool."""
        spec = self.tools.get(call.name) if self.tools is not None else None
        if call.name in self.client_tools:
            # Output is accepted from now on; the call is handed out when the round ends.
            output: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            client_call = ClientCall(call, output, time.monotonic())
            self._waiting[call.id] = client_call
            r.client_calls.append(client_call)
            r.clock.tool_started()
        elif spec is not None and spec.confirm:
            r.confirm_calls.append(call)
        else:
            self.run(r, rnd, call)

    def run(self, r: ResponseState, rnd: Round, call: ToolCall) -> asyncio.Task[None]:
        """Run a server tool now, as a task of the response."""
        task = asyncio.create_task(self._execute(r, rnd, call), name=f"tool-{call.name}-{call.id}")
        r.tasks.append(task)
        return task

    async def _execute(self, r: ResponseState, rnd: Round, call: ToolCall) -> None:
        started_s = time.monotonic()
        r.clock.tool_started()
        r.emit(ToolStarted(call))
        if self.tools is None:
            result = error_result(call, f"unknown tool {call.name!r}", started_s)
        else:
            try:
                result = await self.tools.execute(call, conversation_id=self.conversation_id)
            except Exception as exc:
                # execute() promises results, never exceptions: this is a bug, and it must not
                # pass for a silent "cancelled". The model reads what happened.
                log.exception("running tool call %s (%s) failed", call.id, call.name)
                message = f"the tool could not be run: {type(exc).__name__}: {exc}"
                result = error_result(call, message, started_s)
        r.record(rnd, result)

    async def wait_started(self, r: ResponseState) -> None:
        """Wait for every server tool started so far (never cancels them)."""
        if r.tasks:
            await asyncio.wait(r.tasks)

    async def finish(self, r: ResponseState, rnd: Round, client_timeout_s: float) -> list[ToolCall]:
        """Wait for the round's tools and client tools; return its held ``confirm`` calls.

        The round's client calls are handed out together (one ``ClientToolRequested`` each)
        once its server tools are done: a client answers them all before the reply goes on.
        A call whose output came before that (output is accepted from the moment the call is
        made) is handed out all the same, already answered: the round ends the same way
        whenever the client answers.
        """
        await self.wait_started(r)
        waiting = [
            w for w in r.client_calls if w.call in rnd.calls and w.call.id not in rnd.results
        ]
        handed_s = time.monotonic()
        for client_call in waiting if not r.interrupted.is_set() else []:
            if not client_call.output.done():
                client_call.started_s = handed_s
            r.emit(ClientToolRequested(client_call.call))
        for client_call in waiting:
            await self._wait_client(r, rnd, client_call, client_timeout_s)
        return [c for c in rnd.calls if c in r.confirm_calls and c.id not in rnd.results]

    async def _wait_client(
        self, r: ResponseState, rnd: Round, waiting: ClientCall, timeout_s: float
    ) -> None:
        remaining_s = waiting.started_s + timeout_s - time.monotonic()
        interrupted = asyncio.ensure_future(r.interrupted.wait())
        either: set[asyncio.Future[Any]] = {waiting.output, interrupted}
        try:
            await asyncio.wait(
                either, timeout=max(0.0, remaining_s), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            interrupted.cancel()
        self._waiting.pop(waiting.call.id, None)
        call = waiting.call
        if waiting.output.done():
            duration_s = time.monotonic() - waiting.started_s
            result = ToolResult(call.id, call.name, waiting.output.result(), duration_s=duration_s)
        elif r.interrupted.is_set():
            result = cancelled_result(call, "interrupted")
        else:
            message = f"the client did not return a result within {timeout_s:g} s"
            result = error_result(call, message, waiting.started_s)
        r.record(rnd, result)

    def forget_client_calls(self, r: ResponseState) -> None:
        """Stop accepting output for the response's client calls (it has ended)."""
        for client_call in r.client_calls:
            self._waiting.pop(client_call.call.id, None)
