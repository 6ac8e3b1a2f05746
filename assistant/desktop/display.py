"""What the desktop agent shows: a live terminal view, a plain text log, or JSON lines.

Every display takes the same events (``show(event)``): the agent's status, the VAD's speech
events, the dialogue's events, the sentences spoken and tool announcements.

- ``RichDisplay`` (a terminal): a status line at the bottom (a spinner, what the agent is doing
  and for how long), the reply streaming above it, and the finished lines of the conversation
  printed above that: what the user said, tool calls with arguments, results with durations, and
  the latency of each turn (end of speech to first word).
- ``PlainDisplay`` (a pipe or a file): the same lines, no control codes; the reply streams on one
  line and status changes are lines of their own (``[listening]``).

The reply starts before the user's clip is transcribed, so the ``you:`` line's words come last;
both displays keep the conversation's order all the same (``HeldLines``): the agent shows a
``UserClip`` when the clip joins the conversation, which reserves the ``you:`` line. The terminal
view shows what follows at once below a ``you: …`` placeholder and prints it all once the words
are in; the plain output holds those lines back until then.
- ``JsonDisplay`` (``--json``): one JSON object per event and line, ``{"type": "text_delta",
  "at_s": 1.234, "text": "Hi"}``; ``type`` is the event's class name in snake case and ``at_s``
  the seconds since the display started. Audio is never printed: an utterance shows its
  ``duration_s``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Protocol

from rich import get_console
from rich.console import Console, Group
from rich.file_proxy import FileProxy
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from assistant.desktop.line_order import HeldLines
from assistant.events import (
    AgentState,
    AgentStatus,
    Announcement,
    ClientToolRequested,
    ConfirmationRequested,
    DialogueEvent,
    ErrorEvent,
    MalformedToolCall,
    SpeechEndLikely,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    SpokenSentence,
    TextDelta,
    ToolCall,
    ToolResult,
    TranscriptEvent,
    TurnDone,
    UserTranscript,
    UserTranscriptFailed,
    Utterance,
    WakeWordDetected,
)


@dataclass(frozen=True, slots=True)
class UserClip:
    """A clip of the user joined the conversation as ``item_id``; its transcript follows when
    ``transcribed``."""

    item_id: str
    audio_s: float
    transcribed: bool


@dataclass(frozen=True, slots=True)
class SpeechIgnored:
    """Speech that began over a reply and stayed under ``dialogue.min_interrupt_speech_ms`` of
    voiced audio (a cough, an "mm-hm", a burst of the reply's own echo): it neither interrupted
    the reply nor became a turn. Stream times as in ``Utterance``."""

    start_ms: int
    end_ms: int
    voiced_ms: int


DisplayEvent = (
    DialogueEvent
    | TranscriptEvent
    | UserClip
    | AgentStatus
    | SpeechStarted
    | SpeechEndLikely
    | SpeechResumed
    | SpeechStopped
    | Utterance
    | SpeechIgnored
    | SpokenSentence
    | Announcement
    | WakeWordDetected
)
"""Everything a display can show."""

RESULT_PREVIEW_CHARS = 160
"""Tool results longer than this are shortened on screen (never in JSON)."""

STATUS_LABELS: dict[AgentState, str] = {
    "loading": "loading model",
    "waiting_for_wake_word": "waiting for the wake word",
    "listening": "listening",
    "hearing": "hearing you",
    "thinking": "thinking",
    "calling_tool": "calling a tool",
    "speaking": "speaking",
    "stopped": "stopped",
}

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class Display(Protocol):
    """Somewhere to show the conversation."""

    def show(self, event: DisplayEvent) -> None:
        """Show one event."""
        ...

    def close(self) -> None:
        """Finish the output (end an open line, stop the live view)."""
        ...


# --- rendering (pure) ------------------------------------------------------------------------


def event_type(event: DisplayEvent) -> str:
    """The event's name on the JSON stream: its class name in snake case."""
    return _CAMEL.sub("_", type(event).__name__).lower()


def event_to_json(event: DisplayEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict with its ``type`` first; audio becomes its duration."""
    out: dict[str, Any] = {"type": event_type(event)}
    if isinstance(event, Utterance):
        out.update(
            start_ms=event.start_ms,
            end_ms=event.end_ms,
            duration_s=round(event.duration_s, 3),
            truncated=event.truncated,
        )
        return out
    if isinstance(event, SpeechEndLikely):
        out.update(at_ms=event.at_ms)  # not the announced utterance's audio
        return out
    out.update(dataclasses.asdict(event))
    return out


def status_label(status: AgentStatus) -> str:
    """The words of the status line, e.g. ``calling get_time`` or ``loading model tiny``."""
    if status.state == "calling_tool" and status.detail:
        return f"calling {status.detail}"
    if status.state == "waiting_for_wake_word" and status.detail:
        return f"say “{status.detail}” to talk"
    label = STATUS_LABELS[status.state]
    return f"{label} {status.detail}" if status.detail else label


def _shorten(text: str, limit: int = RESULT_PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_text(call: ToolCall) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


def _turn_line(done: TurnDone) -> Text | None:
    metrics = done.metrics
    parts = []
    if metrics.speech_end_to_first_delta_ms is not None:
        parts.append(f"first word {metrics.speech_end_to_first_delta_ms:.0f} ms after you stopped")
    if metrics.speech_end_to_done_ms is not None:
        parts.append(f"done after {metrics.speech_end_to_done_ms / 1000:.2f} s")
    if done.finish_reason not in ("stop", "tool_calls"):
        parts.append(f"ended: {done.finish_reason}")
    return Text(f"  ({', '.join(parts)})", style="dim") if parts else None


def describe(event: DisplayEvent) -> Text | None:
    """The finished line an event adds to the conversation, or None when it adds none.

    Text deltas and statuses are not lines: displays stream and show them in their own way.
    """
    if isinstance(event, Utterance):
        return Text(f"  (heard {event.duration_s:.1f} s of speech)", style="dim")
    if isinstance(event, SpeechIgnored):
        return Text(
            f"  (ignored {event.voiced_ms} ms of speech over the reply: too short to interrupt)",
            style="dim",
        )
    if isinstance(event, UserTranscript):
        return Text.assemble(("you: ", "bold cyan"), event.text or "(nothing understood)")
    if isinstance(event, UserTranscriptFailed):
        return Text.assemble(("you: ", "bold cyan"), ("(not transcribed)", "dim"))
    if isinstance(event, ToolCall | ClientToolRequested):
        call = event if isinstance(event, ToolCall) else event.call
        return Text.assemble(("→ tool ", "bold magenta"), _call_text(call))
    if isinstance(event, ToolResult):
        verdict = ("ok", "green") if event.ok else ("failed", "bold red")
        return Text.assemble(
            ("← ", "bold magenta"),
            f"{event.name} ",
            verdict,
            f" in {event.duration_s * 1000:.0f} ms: ",
            (_shorten(event.content), "dim"),
        )
    if isinstance(event, MalformedToolCall):
        return Text.assemble(("malformed tool call: ", "bold red"), event.reason)
    if isinstance(event, ConfirmationRequested):
        return Text.assemble(("? ", "bold yellow"), event.prompt)
    if isinstance(event, ErrorEvent):
        return Text.assemble((f"error ({event.code}): ", "bold red"), event.message)
    if isinstance(event, Announcement):
        return Text.assemble((f"⏰ {event.source}: ", "bold yellow"), event.text)
    if isinstance(event, TurnDone):
        return _turn_line(event)
    if isinstance(event, WakeWordDetected):
        return Text(f"  (wake word: {event.phrase})", style="dim")
    return None


# --- the displays ----------------------------------------------------------------------------


class JsonDisplay:
    """One JSON object per event and line, flushed at once (for scripts)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._started_s = time.monotonic()

    def show(self, event: DisplayEvent) -> None:
        """Write the event as one line."""
        record = event_to_json(event)
        record = {"type": record.pop("type"), "at_s": self._elapsed_s(), **record}
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()

    def _elapsed_s(self) -> float:
        return round(time.monotonic() - self._started_s, 3)

    def close(self) -> None:
        """Flush the stream."""
        self.stream.flush()


NO_TRANSCRIPT_LINE = "you: (no transcript)"
"""The user's line when the display closes before the transcript came."""


class PlainDisplay:
    """Lines of text without control codes; the reply streams onto one ``assistant:`` line.

    While the user's transcript is on its way, the lines after it (the reply included) are held
    back, then written in order.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._reply_open = False
        self._reply_held: str | None = None
        """The open reply's text so far while it waits behind the user's line."""
        self._state: AgentStatus | None = None
        self._deferred: AgentStatus | None = None
        self._held: HeldLines[str] = HeldLines()

    def show(self, event: DisplayEvent) -> None:
        """Print the event's line (or status), ending an open reply line first when needed."""
        if isinstance(event, UserClip):
            if event.transcribed:
                self._end_reply()
                self._held.reserve(event.item_id)
        elif isinstance(event, UserTranscript | UserTranscriptFailed):
            line = describe(event)
            if line is not None:
                self._write(self._held.fill(event.item_id, line.plain + "\n"))
            if not self._held.holding and self._reply_held is not None:
                # The reply waited behind the user's line: out with it, and stream the rest.
                self.stream.write(self._reply_held)
                self._reply_held = None
        elif isinstance(event, AgentStatus):
            self._show_status(event)
        elif isinstance(event, TextDelta):
            self._reply_text(event.text)
        else:
            line = describe(event)
            if line is not None or isinstance(event, TurnDone | ToolCall):
                self._end_reply()
            if line is not None:
                self._line(line.plain + "\n")
        self.stream.flush()

    def _reply_text(self, text: str) -> None:
        if not self._reply_open:
            self._reply_open = True
            if self._held.holding:
                self._reply_held = "assistant: "
            else:
                self.stream.write("assistant: ")
        if self._reply_held is not None:
            self._reply_held += text
        else:
            self.stream.write(text)

    def _line(self, line: str) -> None:
        self._write(self._held.add(line))

    def _write(self, lines: list[str]) -> None:
        for line in lines:
            self.stream.write(line)

    def _show_status(self, status: AgentStatus) -> None:
        if self._reply_open:
            # A status line would cut the streaming reply in two: show it once the line ends.
            self._deferred = status
            return
        if status != self._state:
            self._state = status
            self._line(f"[{status_label(status)}]\n")

    def _end_reply(self) -> None:
        if self._reply_open:
            held, self._reply_held = self._reply_held, None
            if held is None:
                self.stream.write("\n")
            else:
                self._line(held + "\n")
            self._reply_open = False
            deferred, self._deferred = self._deferred, None
            if deferred is not None:
                self._show_status(deferred)

    def close(self) -> None:
        """End an open reply line; write what still waited for a transcript."""
        self._end_reply()
        self._write(self._held.release(NO_TRANSCRIPT_LINE + "\n"))
        self.stream.flush()


class _LockedStream:
    """``stream`` (the live view's redirect of stdout or stderr), each write under ``lock``.
    ``Live.stop`` puts the original stream back, which drops this wrapper too."""

    def __init__(self, stream: Any, lock: threading.RLock) -> None:
        self._stream = stream
        self._lock = lock

    def write(self, text: str) -> int:
        with self._lock:
            return int(self._stream.write(text))

    def flush(self) -> None:
        with self._lock:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class RichDisplay:
    """A live terminal view: conversation lines, the streaming reply, and a status line.

    While the user's transcript is on its way, its line shows as ``you: …`` in the live view,
    with every line after it; they are printed for good once the words are in.
    """

    def __init__(self, console: Console | None = None, refresh_per_second: float = 10) -> None:
        self.console = console or Console()
        self._status = AgentStatus("loading")
        self._status_since_s = time.monotonic()
        self._reply = Text()
        self._held: HeldLines[Text] = HeldLines()
        # Printing a line above the live view moves the cursor up by the view's last drawn
        # height, draws the view anew and writes both; rich's own refresh thread can slip in
        # between and redraw the view at another height, so the print's cursor moves end in
        # the wrong place and draw over the line printed before (a vanished "you: ..." line).
        # Hence no refresh thread of rich's: ours, and every print, take one lock.
        self._lock = threading.RLock()
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            auto_refresh=False,
            transient=True,
            # Log lines and stray prints go above the live view instead of through it.
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._live.start()
        for name in ("stdout", "stderr"):  # stray prints, from any thread: the same lock
            stream = getattr(sys, name)
            if isinstance(stream, FileProxy):
                setattr(sys, name, _LockedStream(stream, self._lock))
        self._closed = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick, args=(1 / refresh_per_second,), name="display-refresh", daemon=True
        )
        self._ticker.start()

    def _tick(self, period_s: float) -> None:
        """Redraw the live view (the spinner, the elapsed time) every ``period_s``."""
        while not self._closed.wait(period_s):
            with self._lock:
                if not self._closed.is_set():
                    self._live.refresh()

    def show(self, event: DisplayEvent) -> None:
        """Update the status, extend the reply, or print a finished line."""
        with self._lock:
            self._show(event)

    def _show(self, event: DisplayEvent) -> None:
        if isinstance(event, UserClip):
            if event.transcribed:
                self._end_reply()
                self._held.reserve(event.item_id)
        elif isinstance(event, UserTranscript | UserTranscriptFailed):
            line = describe(event)
            if line is not None:
                self._print(self._held.fill(event.item_id, line))
        elif isinstance(event, AgentStatus):
            if event != self._status:
                self._status, self._status_since_s = event, time.monotonic()
        elif isinstance(event, TextDelta):
            # A new Text each time: the live view's thread may be rendering the old one.
            reply = (
                self._reply.copy() if self._reply else Text.assemble(("assistant: ", "bold green"))
            )
            reply.append(event.text)
            self._reply = reply
        else:
            line = describe(event)
            if line is not None or isinstance(event, TurnDone | ToolCall):
                self._end_reply()
            if line is not None:
                self._print(self._held.add(line))
        self._live.refresh()

    def _print(self, lines: list[Text]) -> None:
        for line in lines:
            self.console.print(line)

    def _end_reply(self) -> None:
        if self._reply:
            self._print(self._held.add(self._reply))
            self._reply = Text()

    def _render(self) -> Group:
        elapsed_s = time.monotonic() - self._status_since_s
        line = Table.grid(padding=(0, 1))
        line.add_row(
            Spinner("dots", style="cyan"),
            Text(status_label(self._status), style="bold"),
            Text(f"{elapsed_s:.1f} s", style="dim"),
            Text("Ctrl-C to quit", style="dim"),
        )
        placeholder = Text.assemble(("you: ", "bold cyan"), ("…", "dim"))
        held = self._held.pending(placeholder)
        return Group(*held, self._reply, line) if self._reply else Group(*held, line)

    def close(self) -> None:
        """Print the unfinished reply and what still waited for a transcript; stop the view."""
        self._closed.set()
        self._ticker.join()
        with self._lock:
            self._end_reply()
            placeholder = Text.assemble(("you: ", "bold cyan"), ("(no transcript)", "dim"))
            self._print(self._held.release(placeholder))
            self._live.stop()


def make_display(mode: str, stream: IO[str]) -> Display:
    """``json``, ``plain``, ``rich``, or ``auto`` (rich on a terminal, plain otherwise)."""
    if mode == "json":
        return JsonDisplay(stream)
    if mode == "auto":
        mode = "rich" if stream.isatty() else "plain"
    if mode == "rich":
        # On stdout, share rich's global console with the log handler, so that log lines print
        # above the live view; a second console on the same terminal would write through it.
        return RichDisplay(get_console() if stream is sys.stdout else Console(file=stream))
    if mode == "plain":
        return PlainDisplay(stream)
    raise ValueError(f"display mode must be auto, rich, plain or json, not {mode!r}")
