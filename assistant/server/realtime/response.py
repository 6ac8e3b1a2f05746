"""One Realtime response: dialogue events in, ``response.*`` server events out.

The writer keeps the response's output items (assistant messages and function calls) and
their indexes, and guarantees exactly one ``response.done`` per ``response.created``.
Server-side tool results are this server's extension: each appears as a
``conversation.item.created`` holding a ``function_call_output`` item. A spoken response
(``speech``) streams each message's audio and transcript instead of its text, and a message
ends (``response.output_audio.done`` ...) only once its audio has all been sent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from assistant import events as ev
from assistant.server.realtime.audio_out import ResponseSpeech
from assistant.server.realtime.protocol import (
    assistant_message_item,
    function_call_item,
    function_call_output_item,
    new_id,
    response_object,
    server_event,
)

log = logging.getLogger(__name__)

SendEvent = Callable[[dict[str, Any]], None]
ChainItem = Callable[[str], "str | None"]
"""Records a new conversation item as the latest and returns the previous one's id."""


class ResponseWriter:
    """Emits the server events of one response, in order, from dialogue events.

    ``speech`` makes it a spoken response (built with this writer's ``response_id``).
    """

    def __init__(
        self,
        send: SendEvent,
        chain: ChainItem,
        speech: Callable[[str], ResponseSpeech] | None = None,
    ) -> None:
        self.response_id = new_id("resp")
        self.cancel_reason: str | None = None
        """Why the response is being cancelled (``client_cancelled``, ``turn_detected``...)."""
        self._send = send
        self._chain = chain
        self.speech = speech(self.response_id) if speech is not None else None
        """The response's audio output (None: a text response)."""
        self._output: list[dict[str, Any]] = []
        self._message_id: str | None = None
        self._message_text = ""
        self._text_before = ""
        """The text of the response's earlier messages."""
        self._said_less = False
        """A spoken message ended with less said than written (a cancel cut it)."""
        self._calls: set[str] = set()
        self._error: dict[str, Any] | None = None
        self._done = False

    @property
    def done(self) -> bool:
        """Whether ``response.done`` was sent."""
        return self._done

    @property
    def delivered_text(self) -> str | None:
        """The text that reached the client: what was spoken of a spoken response; None (all
        of it) for a text response, whose deltas all went out at once."""
        return self.speech.spoken_text if self.speech is not None else None

    def created(self) -> None:
        """Send ``response.created``."""
        self._send(
            server_event(
                "response.created",
                response=response_object(
                    self.response_id, "in_progress", [], spoken=self.speech is not None
                ),
            )
        )

    async def handle(self, event: ev.DialogueEvent) -> None:
        """Translate one dialogue event (transcripts and client tools are the session's).

        Returns at once but where a spoken message ends: then once its audio is all sent.
        """
        if isinstance(event, ev.TextDelta):
            self._text(event.text)
        elif isinstance(event, ev.ToolCall):
            await self._function_call(event)
        elif isinstance(event, ev.ToolResult):
            self._tool_result(event)
        elif isinstance(event, ev.ConfirmationRequested):
            await self._function_call(event.call)
        elif isinstance(event, ev.ErrorEvent):
            self.failed(event.code, event.message)
        elif isinstance(event, ev.TurnDone):
            await self._finish(event)
        elif isinstance(event, ev.MalformedToolCall):
            log.info("response %s: malformed tool call (%s)", self.response_id, event.reason)

    def made_call(self, call_id: str) -> bool:
        """Whether this response's output holds the ``function_call`` item of ``call_id``."""
        return call_id in self._calls

    def stop_speaking(self) -> None:
        """A cancel: send no more audio, now (the message then ends with what was said)."""
        if self.speech is not None:
            self.speech.stop()

    async def done_waiting_for_client(self) -> None:
        """End this response at a client tool call (the client answers, then resumes)."""
        await self._end_message("completed")
        self._send_done("completed", None, None, None)

    def failed(self, code: str, message: str) -> None:
        """Report an error; the response ends as ``failed``."""
        self._error = {"type": "server_error", "code": code, "message": message}
        self._send(server_event("error", error={**self._error, "param": None, "event_id": None}))

    def ensure_done(self) -> None:
        """Send ``response.done`` if the turn ended without one (error, cancellation)."""
        if self._done:
            return
        status = "failed" if self._error else "cancelled"
        self.stop_speaking()
        self._close_message("incomplete")
        self._send_done(status, self._status_details(status), None, None)

    # --- items -----------------------------------------------------------------------------

    def _text(self, delta: str) -> None:
        spoken = self.speech is not None
        if self._message_id is None:
            self._message_id = new_id("item")
            self._message_text = ""
            item = assistant_message_item(self._message_id, "", "in_progress", spoken=spoken)
            self._item_added(item)
            part = (
                {"type": "audio", "transcript": ""}
                if spoken
                else {"type": "output_text", "text": ""}
            )
            self._send(
                server_event(
                    "response.content_part.added",
                    response_id=self.response_id,
                    item_id=self._message_id,
                    output_index=len(self._output),
                    content_index=0,
                    part=part,
                )
            )
            if self.speech is not None:
                self.speech.begin_item(self._message_id, len(self._output), self._text_before)
        self._message_text += delta
        if self.speech is not None:
            self.speech.feed(delta)
            return
        self._send(
            server_event(
                "response.output_text.delta",
                response_id=self.response_id,
                item_id=self._message_id,
                output_index=len(self._output),
                content_index=0,
                delta=delta,
            )
        )

    async def _end_message(self, status: str) -> None:
        """Close the open message, once its audio has all been sent (a spoken response)."""
        if self._message_id is not None and self.speech is not None:
            await self.speech.end_item()
        self._close_message(status)

    def _close_message(self, status: str) -> None:
        if self._message_id is None:
            return
        item_id, text = self._message_id, self._message_text
        self._message_id = None
        self._text_before += text
        where = {
            "response_id": self.response_id,
            "item_id": item_id,
            "output_index": len(self._output),
            "content_index": 0,
        }
        if self.speech is None:
            self._send(server_event("response.output_text.done", **where, text=text))
            part = {"type": "output_text", "text": text}
            self._send(server_event("response.content_part.done", **where, part=part))
            self._item_done(assistant_message_item(item_id, text, status))
            return
        # What the client got is what was spoken: after a cancel, less than was written.
        speech = self.speech.items.get(item_id)
        transcript = speech.transcript if speech is not None else ""
        if transcript != text:
            self._said_less = True
            status = "incomplete"
        self._send(server_event("response.output_audio.done", **where))
        self._send(
            server_event("response.output_audio_transcript.done", **where, transcript=transcript)
        )
        part = {"type": "audio", "transcript": transcript}
        self._send(server_event("response.content_part.done", **where, part=part))
        self._item_done(assistant_message_item(item_id, transcript, status, spoken=True))

    async def _function_call(self, call: ev.ToolCall) -> None:
        if call.id in self._calls:
            return
        self._calls.add(call.id)
        await self._end_message("completed")
        item_id = new_id("item")
        self._item_added(function_call_item(item_id, call.id, call.name, "", "in_progress"))
        where = {
            "response_id": self.response_id,
            "item_id": item_id,
            "output_index": len(self._output),
            "call_id": call.id,
        }
        arguments = call.arguments_json
        self._send(server_event("response.function_call_arguments.delta", **where, delta=arguments))
        self._send(
            server_event(
                "response.function_call_arguments.done",
                **where,
                name=call.name,
                arguments=arguments,
            )
        )
        self._item_done(function_call_item(item_id, call.id, call.name, arguments, "completed"))

    def _tool_result(self, result: ev.ToolResult) -> None:
        item_id = new_id("item")
        self._send(
            server_event(
                "conversation.item.created",
                previous_item_id=self._chain(item_id),
                item=function_call_output_item(item_id, result.call_id, result.content),
            )
        )

    def _item_added(self, item: dict[str, Any]) -> None:
        self._send(
            server_event(
                "response.output_item.added",
                response_id=self.response_id,
                output_index=len(self._output),
                item=item,
            )
        )
        self._send(
            server_event(
                "conversation.item.created", previous_item_id=self._chain(item["id"]), item=item
            )
        )

    def _item_done(self, item: dict[str, Any]) -> None:
        self._send(
            server_event(
                "response.output_item.done",
                response_id=self.response_id,
                output_index=len(self._output),
                item=item,
            )
        )
        self._output.append(item)

    # --- the end ---------------------------------------------------------------------------

    async def _finish(self, done: ev.TurnDone) -> None:
        if self._message_id is not None and self.speech is not None:
            await self.speech.end_item()
        status = {
            "stop": "completed",
            "tool_calls": "completed",
            "length": "incomplete",
            "cancelled": "cancelled",
            "error": "failed",
        }[done.finish_reason]
        if self._error is not None:
            status = "failed"
        self._close_message("completed" if status == "completed" else "incomplete")
        if status == "completed" and self._said_less:
            status = "cancelled"  # written in full, and cut while it was being said
        metrics = done.metrics
        usage = {
            "total_tokens": metrics.prompt_tokens + metrics.generated_tokens,
            "input_tokens": metrics.prompt_tokens,
            "output_tokens": metrics.generated_tokens,
            "input_token_details": {"audio_s": metrics.audio_s},
            "output_token_details": {"text_tokens": metrics.generated_tokens},
        }
        self._send_done(status, self._status_details(status), usage, dataclasses.asdict(metrics))

    def _status_details(self, status: str) -> dict[str, Any] | None:
        if status == "cancelled":
            return {"type": "cancelled", "reason": self.cancel_reason or "client_cancelled"}
        if status == "incomplete":
            return {"type": "incomplete", "reason": "max_output_tokens"}
        if status == "failed":
            return {"type": "failed", "error": self._error}
        return None

    def _send_done(
        self,
        status: str,
        details: dict[str, Any] | None,
        usage: dict[str, Any] | None,
        metrics: dict[str, Any] | None,
    ) -> None:
        self._done = True
        self.stop_speaking()  # its task ends with the response (all was said, or cut)
        response = response_object(
            self.response_id,
            status,
            list(self._output),
            status_details=details,
            usage=usage,
            metrics=metrics,
            spoken=self.speech is not None,
        )
        self._send(server_event("response.done", response=response))
