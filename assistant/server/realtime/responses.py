"""The session's responses: at most one at a time, each a named task over the dialogue.

A response runs a dialogue turn and writes its events (``ResponseWriter``). It may end at the
client's tool calls (the OpenAI flow): the turn is then suspended and the next
``response.create`` resumes it. A cancel takes effect at once; the response's ``response.done``
follows when it has wound down, within ``cancel_wait_s`` even if a server tool it started runs on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from assistant import events as ev
from assistant.conversation.dialogue import Dialogue
from assistant.server.realtime.audio_out import ItemSpeech, ResponseSpeech
from assistant.server.realtime.protocol import ProtocolError
from assistant.server.realtime.response import ChainItem, ResponseWriter, SendEvent

log = logging.getLogger(__name__)


class Responses:
    """Creates, runs, cancels and resumes the responses of one session."""

    def __init__(
        self,
        name: str,
        dialogue: Dialogue,
        send: SendEvent,
        chain: ChainItem,
        *,
        on_done: Callable[[], None],
        cancel_wait_s: float,
    ) -> None:
        self._name = name
        self._dialogue = dialogue
        self._send = send
        self._chain = chain
        self._on_done = on_done
        self.cancel_wait_s = cancel_wait_s
        """How long a cancelled response may take to wind down (one decode step, normally; a
        server tool it started runs on) before it is ended with ``response.done`` all the same."""
        self._writer: ResponseWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._suspended_turn: AsyncIterator[Any] | None = None
        """A turn paused at its client tool calls, resumed by the next ``response.create``."""
        self.client_outputs: set[str] = set()
        """The turn's client calls whose output item the client created itself."""

    @property
    def running(self) -> bool:
        """Whether a response is running."""
        return self._task is not None and not self._task.done()

    @property
    def suspended(self) -> bool:
        """Whether a turn waits for the client's tool outputs and a ``response.create``."""
        return self._suspended_turn is not None

    @property
    def cancelled(self) -> bool:
        """Whether the running response was cancelled (it may still be winding down)."""
        return self._writer is not None and self._writer.cancel_reason is not None

    def spoken_item(self, item_id: str) -> ItemSpeech | None:
        """The speech of message ``item_id`` of the latest response, if it was spoken."""
        speech = self._writer.speech if self._writer is not None else None
        return speech.items.get(item_id) if speech is not None else None

    def create(
        self, event_id: str | None, speech: Callable[[str], ResponseSpeech] | None = None
    ) -> None:
        """Start a response: a new turn, or the suspended one resumed; ``speech`` builds the
        audio output of a spoken one (from its response id)."""
        if self.running:
            raise ProtocolError(
                "conversation_already_has_active_response",
                "a response is already in progress: cancel it or wait for response.done",
                event_id=event_id,
            )
        if not self._dialogue.awaiting_response and self._suspended_turn is None:
            raise ProtocolError(
                "no_user_input",
                "nothing to respond to: add a user message or commit audio first",
                event_id=event_id,
            )
        writer = ResponseWriter(self._send, self._chain, speech)
        self._writer = writer
        turn, self._suspended_turn = self._suspended_turn, None
        self._task = asyncio.create_task(
            self._run(writer, turn), name=f"{self._name}:{writer.response_id}"
        )
        self._task.add_done_callback(lambda _: self._on_done())

    async def _run(self, writer: ResponseWriter, turn: AsyncIterator[Any] | None) -> None:
        """Run a new turn, or resume the suspended ``turn``, as the response ``writer``."""
        writer.created()
        if turn is None:
            if writer.cancel_reason is not None:
                # Cancelled before the dialogue took it up: its input waits for the next one.
                writer.ensure_done()
                return
            turn = aiter(self._dialogue.respond())
            self.client_outputs.clear()
        try:
            async for event in turn:
                if isinstance(event, ev.ClientToolRequested):
                    if not writer.made_call(event.call.id):
                        # Its round's calls came out in an earlier response, which the first
                        # of them ended.
                        continue
                    # The OpenAI flow: the response ends here with every call of the round
                    # (all already in its output); the client runs them, sends a
                    # function_call_output for each (one sent early counts too), then
                    # response.create resumes this turn.
                    self._suspended_turn = turn
                    await writer.done_waiting_for_client()
                    return
                elif isinstance(event, ev.ToolResult) and event.call_id in self.client_outputs:
                    continue  # the client created that output item itself
                else:
                    await writer.handle(event)
        except Exception:
            log.exception("response %s failed", writer.response_id)
            writer.failed("server_error", "the response failed; see the server log")
        finally:
            writer.ensure_done()

    def cancel(self, reason: str) -> None:
        """Stop the running response now, without waiting for it: the session keeps handling
        client events while it winds down; its ``response.done`` follows, within
        ``cancel_wait_s`` even when a server tool it started runs longer."""
        writer, task = self._writer, self._task
        if writer is None or task is None or task.done() or writer.cancel_reason is not None:
            return
        writer.cancel_reason = reason
        writer.stop_speaking()
        # The reply keeps the text that went out: every text delta, or what was spoken (a
        # later conversation.item.truncate can cut it to what was played).
        self._dialogue.stop(writer.delivered_text)
        deadline = asyncio.get_running_loop().call_later(
            self.cancel_wait_s, self._end_stuck, writer, task
        )
        task.add_done_callback(lambda _: deadline.cancel())

    def _end_stuck(self, writer: ResponseWriter, task: asyncio.Task[None]) -> None:
        """A cancelled response still waits for a server tool: end it for the client now (the
        tool's result still joins the history when it arrives)."""
        log.info(
            "response %s: a started tool still runs %g s after the cancel; ending the response",
            writer.response_id,
            self.cancel_wait_s,
        )
        task.cancel()

    async def finish(self, grace_s: float) -> None:
        """Let a running response finish for up to ``grace_s``."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=grace_s)

    async def close(self, wait_s: float) -> None:
        """Cancel any running response (``wait_s`` to wind down), drop the suspended turn."""
        task = self._task
        if task is not None and not task.done():
            self.cancel("server_shutdown")
            await asyncio.wait({task}, timeout=wait_s)
            task.cancel()
            await asyncio.wait({task})
        await self.drop_suspended_turn()

    async def drop_suspended_turn(self) -> None:
        """New user input while a client tool is pending abandons that tool call."""
        turn, self._suspended_turn = self._suspended_turn, None
        if turn is None:
            return
        self._dialogue.stop()
        # respond() is typed as an iterator but is an async generator: close it now rather
        # than at garbage collection.
        close = getattr(turn, "aclose", None)
        if close is not None:
            await close()
