"""One conversation: user turns in, a streamed reply out, the tools the model calls run between.

``Dialogue.add_user_turn`` takes an utterance or typed text; ``Dialogue.respond`` asks the model
worker for a reply and streams ``events.DialogueEvent`` objects until ``TurnDone``: text deltas,
tool calls and their results (tools run concurrently through the registry; ``confirm`` tools
wait for the next user turn to say yes; client tools wait for ``provide_tool_output``), then the
model is asked again with the results, until it answers without tools or the tool-round limit
is reached. ``interrupt`` (barge-in) and ``cancel`` stop a reply within one decode step.

``speculate`` starts a turn's first model call during the VAD's hangover, before the utterance
is committed (``assistant.conversation.speculation``); the committed turn adopts it when it asks
for exactly the same. Transcripts of the user's clips never hold a reply up: ``TurnDone`` comes
without them, and they reach ``on_transcript`` when transcription ends.

Each response runs as one named task that pushes its events to the consumer, so that an
interruption settles the history even while nobody reads the stream. The history rules live
in ``assistant.conversation.history``; they keep the history valid whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mistral_common.protocol.instruct.messages import SystemMessage
from mistral_common.protocol.instruct.tool_calls import Tool

from assistant.config import DialogueSettings, GenerationParams
from assistant.conversation.announcements import HeldAnnouncements
from assistant.conversation.confirmation import ConfirmationGate
from assistant.conversation.history import (
    TOOL_NAME_PATTERN,
    History,
    Message,
    Round,
    Turn,
    cancelled_result,
    common_prefix,
    delivered_rounds,
    reply_messages,
)
from assistant.conversation.metrics import summary
from assistant.conversation.session_log import LoggedInput, SessionLog
from assistant.conversation.speculation import SpeculationStats, Speculator
from assistant.conversation.transcripts import UserTranscripts
from assistant.conversation.turn import (
    ResponseState,
    ToolRunner,
    UserInput,
    clock_for,
    user_input,
)
from assistant.events import (
    Announcement,
    DialogueEvent,
    ErrorEvent,
    FinishReason,
    MalformedToolCall,
    ResponseDone,
    TextDelta,
    ToolCall,
    TranscriptEvent,
    TurnDone,
    Utterance,
    new_tool_call_id,
)
from assistant.model.backend import ModelBackend
from assistant.tools import ToolRegistry

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Committed:
    """Where the last response's messages sit in the history: ``turn.replies[start:end]``."""

    turn: Turn
    start: int
    end: int
    rounds: list[Round]
    interrupted: bool
    """The response was stopped (its text already cut to what was delivered then)."""
    cut_by_stop: bool = False
    """``stop(delivered_text)`` has cut it after its end (it does so once)."""


class Dialogue:
    """One conversation with the model: history, the tool loop, interruptions, metrics."""

    def __init__(
        self,
        worker: ModelBackend,
        tools: ToolRegistry | None = None,
        settings: DialogueSettings | None = None,
        *,
        params: GenerationParams | None = None,
        conversation_id: str | None = None,
    ) -> None:
        self.worker = worker
        self.tools = tools
        # A copy: set_instructions must not reach other dialogues sharing the settings object.
        self.settings = settings.model_copy() if settings else DialogueSettings()
        self.params = params or GenerationParams()
        """Sampling and the reply length of every model call (a session may change it)."""
        self.conversation_id = conversation_id or f"conv_{uuid.uuid4().hex[:16]}"
        self._runner = ToolRunner(tools, self.conversation_id)
        self.on_transcript: Callable[[TranscriptEvent], None] | None = None
        """Called with each user clip's transcript (or its failure) when transcription ends:
        after the reply's first model call, often after ``TurnDone``."""
        self._transcripts = UserTranscripts(worker, self.conversation_id, self._report_transcript)
        self._speculator = Speculator(worker, self.conversation_id)
        self._after: asyncio.Task[None] | None = None
        """The newest ended turn's transcripts and session-log line (each waits for the one
        before, so that log lines keep the turns' order)."""
        self._transcribing: set[asyncio.Task[None]] = set()
        self._history = History()
        self._confirmation = ConfirmationGate(
            self._history, self._runner, self._transcripts, self.conversation_id
        )
        self._announcements = HeldAnnouncements(self._history, self.conversation_id)
        self._new_inputs: list[UserInput] = []
        self._waiting: list[UserInput] = []
        self._call_ids: set[str] = set()
        self._response: ResponseState | None = None
        self._last: _Committed | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting: set[asyncio.Event] = set()
        """One per ``respond()`` still waiting for the previous response; ``stop()`` sets them."""
        self._turns = 0
        self._session_log: SessionLog | None = None
        if self.settings.session_log_path is not None:
            self._session_log = SessionLog(
                self.settings.session_log_path,
                self.conversation_id,
                log_audio=self.settings.log_audio,
            )

    # --- state -----------------------------------------------------------------------------

    @property
    def history(self) -> list[Message]:
        """The conversation as mistral-common messages (without the instructions).

        A reply waiting for a confirmation joins the history once the user has answered.
        """
        return self._history.messages

    @property
    def is_responding(self) -> bool:
        """True from the start of a response until its history is settled."""
        return self._response is not None and not self._response.settled.is_set()

    @property
    def awaiting_response(self) -> bool:
        """True when user input waits for a response: added and not taken up by one yet, or
        taken up by one that ended without a reply to it (a cancel before it said anything)."""
        if self._new_inputs or self._waiting:
            return True
        return (
            not self.is_responding
            and not self._confirmation.pending
            and self._history.awaiting_reply
        )

    @property
    def awaiting_confirmation(self) -> bool:
        """True when the next user turn answers a ``confirm`` tool's question."""
        return self._confirmation.pending

    @property
    def unanswered_audio_s(self) -> float:
        """Seconds of user audio that no response has taken up yet."""
        return sum(entry.item.audio_s for entry in (*self._new_inputs, *self._waiting))

    @property
    def unanswered_text_chars(self) -> int:
        """Characters of typed user text that no response has taken up yet."""
        return sum(len(entry.text or "") for entry in (*self._new_inputs, *self._waiting))

    @property
    def dropped_turns(self) -> int:
        """How many of the oldest turns the context budget has removed."""
        return self._history.dropped_turns

    @property
    def speculations(self) -> SpeculationStats:
        """How this conversation's preemptive turns ended: started, adopted, discarded."""
        return self._speculator.stats

    def set_instructions(self, text: str | None) -> None:
        """Replace the persona / instruction text (from the next model request on)."""
        self.settings.instructions = text or None

    def set_client_tools(self, tools: Sequence[Mapping[str, Any]]) -> None:
        """Declare the tools the connected client runs itself (OpenAI function-tool dicts)."""
        self._runner.set_client_tools(tools)

    # --- input -----------------------------------------------------------------------------

    def add_user_turn(
        self,
        *,
        audio: np.ndarray | Utterance | None = None,
        text: str | None = None,
        speech_end_s: float | None = None,
    ) -> str:
        """Add what the user said or typed; return its item id.

        ``audio`` is 16 kHz mono (int16 or float) or an ``Utterance``; ``speech_end_s`` is the
        ``time.monotonic()`` of the end of speech, for the turn's latency metrics. Input that
        follows unanswered input joins the same user message; while a confirmation is pending
        the input is the answer. Bad audio raises ``AudioError`` and adds nothing.
        """
        entry = user_input(audio, text, speech_end_s)
        if self.is_responding:
            self._waiting.append(entry)
        else:
            self._accept(entry)
        return entry.item.item_id

    def _accept(self, entry: UserInput) -> None:
        if not self._confirmation.pending:
            self._history.add_user(entry.item)
        self._new_inputs.append(entry)

    def add_announcement(self, announcement: Announcement | str) -> None:
        """Record something the assistant said unprompted (a timer fired) as an assistant message,
        so that a follow-up ("what was that?") can be answered.

        It joins the history at once when the newest turn is answered and no response runs;
        otherwise (a reply running, input or a confirmation waiting for one) right after that
        reply, so user input and its reply are never split.
        """
        self._announcements.hold(announcement)
        if not self.is_responding:
            self._announcements.commit(self._confirmation.pending)

    def provide_tool_output(self, call_id: str, output: str) -> None:
        """Deliver a client tool's output; ``ValueError`` if no call ``call_id`` is waiting."""
        self._runner.provide_output(call_id, output)

    # --- preemptive turns ------------------------------------------------------------------

    def speculate(self, audio: np.ndarray | Utterance) -> bool:
        """Start answering ``audio`` before it is committed; True when a speculation started.

        Called at the first silent frame after speech with the utterance the VAD will commit
        if no more speech comes. The reply's first model call starts now on a copy of the
        would-be prompt; nothing is shown, run or recorded. The committed turn adopts it when
        its first model call asks for exactly the same (same samples, history, tools and
        sampling); otherwise it is discarded. Off (False) with ``preemptive`` off, or while a
        response runs or waits, or a confirmation waits for its answer (the answer must be
        transcribed first). Bad audio raises ``AudioError``.
        """
        self._speculator.discard()
        if not self.settings.preemptive or not self._may_speculate():
            return False
        entry = user_input(audio, None, None)
        history = self._history.copy()
        history.add_user(entry.item)
        tools = self._runner.mistral_tools()
        messages = self._prompt([], tools, history)
        if messages is None:
            return False
        self._speculator.start(messages, tools, self.params, heard=audio)
        return True

    def discard_speculation(self) -> bool:
        """Drop the preemptive turn (the user spoke on); False if none was pending."""
        return self._speculator.discard()

    def speculation_acts_on(self, audio: object) -> bool:
        """Whether the preemptive turn was started for ``audio`` (the very object handed to
        ``speculate``, such as the VAD's announced utterance) and its first model call has
        begun a tool call: the model took that utterance for a complete command, so a
        front-end may end the turn before its full silence (``vad.eager_silence_ms``)."""
        return self._speculator.acts_on(audio)

    def _may_speculate(self) -> bool:
        return not (
            self.is_responding or self._starting or self._waiting or self._confirmation.pending
        )

    # --- responding ------------------------------------------------------------------------

    async def respond(self) -> AsyncIterator[DialogueEvent]:
        """Answer the user's latest input; the last event is ``TurnDone``.

        Leaving the loop early cancels the response (the history stays valid). A ``stop()``
        while it waits for the previous response to settle ends it before it begins (a
        ``cancelled`` ``TurnDone``): it takes up no input, which waits for the next one.
        """
        previous = self._response
        if previous is not None and not (
            previous.settled.is_set() or previous.interrupted.is_set()
        ):
            raise RuntimeError("a response is already running: interrupt or cancel it first")
        stopped = asyncio.Event()
        self._starting.add(stopped)
        try:
            if previous is not None:
                # A stopped response settles first: the tools it started end in the history.
                await previous.settled.wait()
            if self._task is not None:
                await asyncio.wait({self._task})  # the previous turn's log line and transcripts
        finally:
            self._starting.discard(stopped)
        if stopped.is_set():
            yield TurnDone("", "cancelled")
            return
        if self.is_responding:
            raise RuntimeError("a response is already running: interrupt or cancel it first")
        if not self._confirmation.pending and not self._history.awaiting_reply:
            raise RuntimeError("nothing to respond to: add a user turn first")
        events: asyncio.Queue[DialogueEvent] = asyncio.Queue()
        inputs, self._new_inputs = self._new_inputs, []
        response = ResponseState(events.put_nowait, inputs, clock_for(inputs))
        self._response = response
        task = asyncio.create_task(self._run(response), name=f"dialogue-{self.conversation_id}")
        self._task = task
        settle = True
        try:
            while True:
                event = await events.get()
                yield event
                if isinstance(event, TurnDone):
                    return
        except asyncio.CancelledError:
            # The consumer's task is being cancelled: stop the reply without holding the
            # cancellation up for as long as a started tool runs; the response's own task
            # still settles the history.
            settle = False
            self.stop()
            raise
        finally:
            # A response someone stopped (stop() waits for nothing) is not waited for either:
            # closing its stream must not hold the closer up while a started tool runs.
            if settle and not response.interrupted.is_set() and not response.settled.is_set():
                await self.cancel()

    async def interrupt(
        self, delivered_text: str | None = None, *, speech_ms: float | None = None
    ) -> bool:
        """Barge-in: the user started speaking; cancel the reply if the settings allow.

        ``delivered_text`` is how much of the reply's text reached the user (None: all that was
        sent); ``speech_ms`` how long the user has spoken (the minimum applies when given).
        Returns True when a response was cancelled; the history is settled on return.
        """
        if not self.barge_in_allowed(speech_ms):
            return False
        return await self.cancel(delivered_text)

    def barge_in_allowed(self, speech_ms: float | None = None) -> bool:
        """Whether user speech (``speech_ms`` long, when known) may interrupt a reply."""
        if not self.settings.interrupt_response:
            return False
        return speech_ms is None or speech_ms >= self.settings.min_interrupt_speech_ms

    async def cancel(self, delivered_text: str | None = None) -> bool:
        """Stop the running response whatever the barge-in settings and wait until its history
        is settled; False if none runs.

        Tool calls already started finish and their results are kept; the others are
        recorded as cancelled; the reply text is cut to ``delivered_text``. When the reply has
        already ended (generated, still being spoken), ``delivered_text`` cuts it in the
        history all the same, and the result is False: nothing was running.
        """
        response = self._response
        if not self.stop(delivered_text) or response is None:
            return False
        await response.settled.wait()
        return True

    def stop(self, delivered_text: str | None = None) -> bool:
        """``cancel`` without the wait: the model stream stops now, and the response settles on
        its own once the tools it started have finished; a ``respond()`` still waiting for it
        to settle ends before it begins. False if no response runs or waits to begin."""
        starting = bool(self._starting)
        for stopped in self._starting:
            stopped.set()
        response = self._response
        if response is None or response.settled.is_set():
            if delivered_text is not None:
                self._cut_last_reply(delivered_text)
            return starting
        if not response.interrupted.is_set():
            response.delivered_text = delivered_text
            response.interrupted.set()
            if response.stream is not None:
                response.stream.cancel()
        return True

    def cut_reply(self, heard_text: str) -> bool:
        """Cut the newest response's text in the history to ``heard_text``, what the user heard
        of it (a prefix of its streamed text, all rounds together); tool calls stay.

        For a client that played the reply itself and says later how much it played. It works
        whether the response ended or was stopped, as often as asked (a cut never grows the
        text back), and after newer input; a response stopped but not yet settled is cut when
        it settles. Returns False when there is nothing to cut: no response yet, its turn gone
        from the history, or a confirmation pending. ``RuntimeError`` while a response runs
        that nobody stopped.
        """
        response = self._response
        if response is not None and not response.settled.is_set():
            if not response.interrupted.is_set():
                raise RuntimeError("the reply is still being written: stop it first")
            before = response.delivered_text
            response.delivered_text = (
                heard_text if before is None else common_prefix(before, heard_text)
            )
            return True
        last = self._last
        if last is None or self._confirmation.pending:
            return False
        return self._recut(last, heard_text)

    def _cut_last_reply(self, delivered_text: str) -> None:
        """``stop()`` after the reply ended: cut it to what the user heard (once, if it was not
        stopped itself; not after newer input)."""
        last = self._last
        newest = self._history.turns[-1] if self._history.turns else None
        if (
            last is None
            or last.interrupted
            or last.cut_by_stop
            or self._confirmation.pending
            or newest is not last.turn
        ):
            return
        last.cut_by_stop = True
        self._recut(last, delivered_text)

    def _recut(self, last: _Committed, heard_text: str) -> bool:
        rounds = delivered_rounds(last.rounds, heard_text)
        replies = reply_messages(rounds)
        if not self._history.replace_replies(last.turn, last.start, last.end, replies):
            return False
        last.end = last.start + len(replies)
        last.rounds = rounds
        return True

    async def aclose(self, wait_s: float | None = None) -> None:
        """Stop any response and wait for its end, then release the conversation: the model
        worker's cached state of it, and the session log.

        ``wait_s`` bounds the wait (None: as long as the tools it started take); a response
        still running after it is released when it ends, its tools' results recorded.
        Transcriptions still running are cancelled (nobody will read them) unless a session
        log records them, which waits for them within ``wait_s``; the log gets the line of
        every ended turn.
        """
        loop = asyncio.get_running_loop()
        deadline_s = None if wait_s is None else loop.time() + wait_s
        self.stop()
        self._speculator.discard()
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=wait_s)
        after = self._after
        if self._session_log is not None and after is not None and not after.done():
            left_s = None if deadline_s is None else max(0.0, deadline_s - loop.time())
            await asyncio.wait({after}, timeout=left_s)
        for transcribing in self._transcribing:
            transcribing.cancel()
        await self.drain()
        if task is None or task.done():
            self._release()
            return
        log.warning(
            "%s: closed while a started tool still runs; released when it ends",
            self.conversation_id,
        )
        task.add_done_callback(self._release_when_ended)

    def _release_when_ended(self, _: object) -> None:
        # The response has just ended: its transcripts are not wanted any more, and its
        # session-log line is written before the log closes.
        for transcribing in self._transcribing:
            transcribing.cancel()
        after = self._after
        if after is None or after.done():
            self._release()
        else:
            after.add_done_callback(lambda _: self._release())

    async def drain(self) -> None:
        """Wait until the ended turns' transcripts have arrived (or failed) and their
        session-log lines are written."""
        while self._after is not None and not self._after.done():
            await asyncio.wait({self._after})

    def _release(self) -> None:
        # Otherwise the KV cache of a finished conversation stays until LRU eviction.
        self.worker.forget(self.conversation_id)
        if self._session_log is not None:
            self._session_log.close()

    # --- the turn --------------------------------------------------------------------------

    async def _run(self, r: ResponseState) -> None:
        finish: FinishReason = "error"
        try:
            try:
                finish = await self._answer(r)
            except Exception as exc:
                log.exception("turn of %s failed", self.conversation_id)
                r.emit(ErrorEvent("dialogue_error", f"{type(exc).__name__}: {exc}"))
                finish = "error"
            finally:
                await self._settle(r)
            if r.interrupted.is_set():
                finish = "cancelled"
            await self._wrap_up(r, finish)
        except Exception as exc:
            log.exception("closing the turn of %s failed", self.conversation_id)
            r.emit(ErrorEvent("dialogue_error", f"{type(exc).__name__}: {exc}"))
        finally:
            r.settled.set()
            if not r.turn_done_sent:
                r.emit(TurnDone(r.reply_text(), "error", tuple(r.calls), tuple(r.results)))

    async def _answer(self, r: ResponseState) -> FinishReason:
        if self._confirmation.pending:
            self._speculator.discard()
            await self._confirmation.resolve(
                r, self.settings.confirm_yes_words, self.settings.transcription_language
            )
        tools = self._runner.mistral_tools()
        tool_rounds = 0
        while not r.interrupted.is_set():
            rnd = Round()
            r.rounds.append(rnd)
            may_run = tool_rounds < self.settings.max_tool_rounds
            finish = await self._generate(r, rnd, tools, may_run)
            if finish in ("cancelled", "error") or not rnd.calls:
                return finish
            if not may_run:
                for call in rnd.calls:
                    r.record(rnd, cancelled_result(call, "the tool-round limit was reached"))
                limit = Round(text=self.settings.tool_round_limit_message)
                r.rounds.append(limit)
                r.say(limit.text)
                return "length"
            confirm = await self._runner.finish(r, rnd, self.settings.client_tool_timeout_s)
            if confirm and not r.interrupted.is_set():
                self._confirmation.ask(r, rnd, confirm)
                return "tool_calls"
            tool_rounds += 1
        return "cancelled"

    def _with_instructions(self, messages: list[Message]) -> list[Message]:
        if not self.settings.instructions:
            return messages
        return [SystemMessage(content=self.settings.instructions), *messages]

    def _prompt(
        self, draft: list[Message], tools: list[Tool], history: History | None = None
    ) -> list[Message] | None:
        """The request's messages, with the history (``history``: a copy to try on instead)
        shrunk to the budget; None if impossible."""
        trial = history is not None
        history = history or self._history
        model_limit = self.worker.context_tokens - self.params.max_new_tokens
        budget = self.settings.context_budget_tokens
        limit = model_limit if budget is None else min(budget, model_limit)

        def count(messages: list[Message]) -> int:
            return self.worker.count_tokens(self._with_instructions([*messages, *draft]), tools)

        before = history.dropped_turns
        fits = history.fit(
            count,
            limit,
            keep_transcripts=self.settings.keep_dropped_transcripts,
            max_clips=self.worker.max_clips,
        )
        if history.dropped_turns != before and not trial:
            log.info(
                "%s: dropped %d old turn(s) to stay within %d prompt tokens and the clip limit",
                self.conversation_id,
                history.dropped_turns - before,
                limit,
            )
        if not fits:
            return None
        return self._with_instructions([*history.messages, *draft])

    def _over_budget(self, tools: list[Tool]) -> bool:
        """Whether the history as it stands needs shrinking for the next request."""
        model_limit = self.worker.context_tokens - self.params.max_new_tokens
        budget = self.settings.context_budget_tokens
        limit = model_limit if budget is None else min(budget, model_limit)
        messages = self._with_instructions(self._history.messages)
        return self.worker.count_tokens(messages, tools) > limit

    async def _generate(
        self, r: ResponseState, rnd: Round, tools: list[Tool], may_run: bool
    ) -> FinishReason:
        """One model call: stream its text, start its tool calls as they arrive."""
        first = len(r.rounds) == 1
        if first and self._transcribing and self._over_budget(tools):
            # Shrinking the history replaces old clips by their transcripts: earlier turns'
            # transcripts still on their way are worth the wait here (and only here).
            await asyncio.wait(set(self._transcribing))
        messages = self._prompt(reply_messages(r.rounds[:-1]), tools)
        if messages is None:
            self._speculator.discard()
            r.emit(ErrorEvent("context_overflow", self._drop_oversize_input(r)))
            return "error"
        stream = self._speculator.take(messages, tools, self.params) if first else None
        if stream is not None:
            r.clock.preempted()
        else:
            stream = self.worker.respond(
                messages,
                tools=tools or None,
                params=self.params,
                conversation_id=self.conversation_id,
            )
        r.stream = stream
        if r.interrupted.is_set():
            stream.cancel()
        finish: FinishReason = "error"
        async for event in stream:
            if isinstance(event, TextDelta):
                rnd.text += event.text
                r.say(event.text)
            elif isinstance(event, ToolCall):
                self._on_call(r, rnd, event, may_run)
            elif isinstance(event, MalformedToolCall):
                if not r.interrupted.is_set():  # else the cancel cut it off mid-call
                    r.emit(event)
            elif isinstance(event, ErrorEvent):
                r.emit(event)
            elif isinstance(event, ResponseDone):
                r.clock.model_call(event)
                finish = event.finish_reason
        r.stream = None
        if r.transcripts is None:
            # The model thread has finished the first generation: transcripts no longer
            # delay the reply (they run while tools do).
            r.transcripts = self._start_transcripts(r)
        return finish

    def _drop_oversize_input(self, r: ResponseState) -> str:
        """Take the response's input out of the history when even alone it is over the context
        budget (left there, every later turn would join it and fail too); say what happened."""
        if r.rounds[:-1]:
            return (
                "the conversation with this turn's tool results does not fit the context "
                "budget: ask for less at a time"
            )
        max_clips = self.worker.max_clips
        clips = self._history.clips(self._history.turns[-1:])
        if max_clips is not None and clips > max_clips:
            reason = (
                f"the input holds {clips} audio clips and the model takes at most {max_clips} "
                "per request"
            )
        else:
            reason = "the input does not fit the context budget even alone"
        if not self._history.remove_unanswered({entry.item.item_id for entry in r.inputs}):
            if max_clips is not None and clips > max_clips:
                return f"{reason}: send fewer clips at a time"
            return "the newest turn alone does not fit the context budget: shorten the input"
        log.info("%s: input over the context budget removed from the history", self.conversation_id)
        return f"{reason}, so it was removed from the conversation: send a shorter input"

    def _start_transcripts(self, r: ResponseState) -> asyncio.Task[None]:
        task = self._transcripts.start(
            r,
            enabled=self.settings.transcribe_user,
            language=self.settings.transcription_language,
        )
        self._transcribing.add(task)
        task.add_done_callback(self._transcribing.discard)
        return task

    def _report_transcript(self, event: TranscriptEvent) -> None:
        if self.on_transcript is not None:
            self.on_transcript(event)

    def _on_call(self, r: ResponseState, rnd: Round, call: ToolCall, may_run: bool) -> None:
        if not TOOL_NAME_PATTERN.match(call.name):
            r.emit(MalformedToolCall(call.name, f"invalid tool name {call.name!r}"))
            return
        if call.id in self._call_ids:
            call = ToolCall(new_tool_call_id(), call.name, call.arguments)
        self._call_ids.add(call.id)
        rnd.calls.append(call)
        r.calls.append(call)
        r.emit(call)
        if not may_run or r.interrupted.is_set():
            return
        self._runner.start(r, rnd, call)

    # --- the end of a turn -----------------------------------------------------------------

    async def _settle(self, r: ResponseState) -> None:
        """Let started tools finish, record every call's result, commit the reply."""
        await self._runner.wait_started(r)
        self._runner.forget_client_calls(r)
        for rnd in r.rounds:
            for call in rnd.calls:
                if call.id not in rnd.results:
                    r.record(rnd, cancelled_result(call, "interrupted"))
        rounds = r.rounds
        if r.interrupted.is_set():
            rounds = delivered_rounds(rounds, r.delivered_text)
        replies = reply_messages(rounds)
        self._last = None
        if replies:
            turn = self._history.turns[-1]
            start = len(turn.replies)
            self._history.add_replies(replies)
            self._last = _Committed(
                turn, start, len(turn.replies), rounds, interrupted=r.interrupted.is_set()
            )
        r.clock.done()
        waiting, self._waiting = self._waiting, []
        r.settled.set()
        self._announcements.commit(self._confirmation.pending)
        for entry in waiting:
            self._accept(entry)

    async def _wrap_up(self, r: ResponseState, finish: FinishReason) -> None:
        if r.transcripts is None:
            r.transcripts = self._start_transcripts(r)
        done = TurnDone(
            text=r.reply_text(),
            finish_reason=finish,
            tool_calls=tuple(r.calls),
            tool_results=tuple(r.results),
            metrics=r.clock.metrics(),
        )
        self._turns += 1
        log.info(
            "%s turn %d %s: %s", self.conversation_id, self._turns, finish, summary(done.metrics)
        )
        self._after = asyncio.create_task(
            self._after_turn(r, done, self._turns, r.transcripts, self._after),
            name=f"after-turn-{self.conversation_id}-{self._turns}",
        )
        r.turn_done_sent = True
        r.emit(done)

    async def _after_turn(
        self,
        r: ResponseState,
        done: TurnDone,
        number: int,
        transcripts: asyncio.Task[None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """What an ended turn still does off the reply's path: wait for its transcripts, then
        write its session-log line (after the previous turn's)."""
        await asyncio.wait({transcripts})
        if previous is not None:
            await asyncio.wait({previous})
        if self._session_log is None:
            return
        inputs = [
            LoggedInput(e.item.item_id, e.text, e.samples, e.item.audio_s, e.item.transcript)
            for e in r.inputs
        ]
        try:
            await asyncio.to_thread(self._session_log.write_turn, number, inputs, done)
        except Exception:  # a full disk must not end the conversation
            log.exception(
                "%s: writing turn %d to the session log failed", self.conversation_id, number
            )
