"""The displays show the conversation: live in a terminal, as plain lines, or as JSON lines."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from rich.console import Console

from assistant.desktop.display import (
    JsonDisplay,
    PlainDisplay,
    RichDisplay,
    UserClip,
    describe,
    event_to_json,
    event_type,
    make_display,
)
from assistant.events import (
    AgentStatus,
    ErrorEvent,
    SpeechStarted,
    SpokenSentence,
    TextDelta,
    ToolCall,
    ToolResult,
    ToolStarted,
    TurnDone,
    TurnMetrics,
    UserTranscript,
    Utterance,
)

CALL = ToolCall("a1B2c3D4e", "get_time", {"timezone": "UTC"})
RESULT = ToolResult("a1B2c3D4e", "get_time", '{"time": "10:10"}', duration_s=0.012)
DONE = TurnDone(
    "It is ten past ten.",
    tool_calls=(CALL,),
    tool_results=(RESULT,),
    metrics=TurnMetrics(speech_end_to_first_delta_ms=420.4, speech_end_to_done_ms=1250.0),
)
TURN = [
    AgentStatus("thinking"),
    UserTranscript("item_1", "What time is it?"),
    CALL,
    ToolStarted(CALL),
    AgentStatus("calling_tool", "get_time"),
    RESULT,
    AgentStatus("thinking"),
    TextDelta("It is ten "),
    TextDelta("past ten."),
    DONE,
    AgentStatus("listening"),
]


def test_json_names_are_the_event_class_in_snake_case() -> None:
    """``type`` on the JSON stream is the class name in snake case."""
    assert event_type(TextDelta("x")) == "text_delta"
    assert event_type(SpeechStarted(0)) == "speech_started"
    assert event_type(AgentStatus("listening")) == "agent_status"


def test_an_utterance_shows_its_duration_not_its_audio() -> None:
    """Utterances go out as times and a duration; the samples never reach the output."""
    utterance = Utterance(np.zeros(16000, dtype=np.int16), start_ms=200, end_ms=1200)
    assert event_to_json(utterance) == {
        "type": "utterance",
        "start_ms": 200,
        "end_ms": 1200,
        "duration_s": 1.0,
        "truncated": False,
    }


def test_json_display_writes_one_parsable_object_per_event() -> None:
    """Each event is one line: type, seconds since start, then every field, nested included."""
    out = io.StringIO()
    display = JsonDisplay(out)
    for event in TURN:
        display.show(event)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in records] == [event_type(e) for e in TURN]
    assert all(list(r)[:2] == ["type", "at_s"] and r["at_s"] >= 0 for r in records)
    started = records[3]
    assert started["call"] == {"id": "a1B2c3D4e", "name": "get_time", "arguments": CALL.arguments}
    done = records[9]
    assert done["text"] == "It is ten past ten."
    assert done["metrics"]["speech_end_to_first_delta_ms"] == 420.4


def test_plain_display_prints_the_turn_as_lines_without_control_codes() -> None:
    """Transcript, tool call, result with duration, streamed reply and latency, as plain text."""
    out = io.StringIO()
    display = PlainDisplay(out)
    for event in TURN:
        display.show(event)
    display.close()
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "[thinking]",
        "you: What time is it?",
        '→ tool get_time({"timezone": "UTC"})',
        "[calling get_time]",
        '← get_time ok in 12 ms: {"time": "10:10"}',
        "[thinking]",
        "assistant: It is ten past ten.",
        "  (first word 420 ms after you stopped, done after 1.25 s)",
        "[listening]",
    ]


def test_plain_display_holds_a_status_back_until_the_reply_line_ends() -> None:
    """A status that arrives while the reply streams does not cut the reply line in two."""
    out = io.StringIO()
    display = PlainDisplay(out)
    for event in [TextDelta("One. "), AgentStatus("speaking"), TextDelta("Two."), DONE]:
        display.show(event)
    assert out.getvalue().splitlines()[:2] == ["assistant: One. Two.", "[speaking]"]


def test_plain_display_shows_a_repeated_status_once() -> None:
    """The same status twice in a row is one line."""
    out = io.StringIO()
    display = PlainDisplay(out)
    display.show(AgentStatus("listening"))
    display.show(AgentStatus("listening"))
    assert out.getvalue() == "[listening]\n"


def test_failed_tool_results_and_errors_say_so() -> None:
    """A failed tool result reads "failed"; an error shows its code and message."""
    failed = ToolResult("x", "get_time", '{"error": "bad zone"}', ok=False, duration_s=0.001)
    line = describe(failed)
    assert line is not None and "get_time failed in 1 ms" in line.plain
    error = describe(ErrorEvent("model_error", "out of memory"))
    assert error is not None and error.plain == "error (model_error): out of memory"


def test_long_tool_results_are_shortened_on_screen() -> None:
    """A long result is cut on screen (JSON keeps all of it)."""
    long = ToolResult("x", "search", json.dumps({"text": "a" * 1000}))
    line = describe(long)
    assert line is not None and line.plain.endswith("…") and len(line.plain) < 250
    assert event_to_json(long)["content"] == long.content


def test_spoken_sentences_and_deltas_add_no_line_of_their_own() -> None:
    """Deltas stream, spoken sentences only change the status: neither is a finished line."""
    assert describe(TextDelta("Hi")) is None
    assert describe(SpokenSentence("Hi.", 0.4)) is None


def test_rich_display_shows_the_status_line_and_the_conversation() -> None:
    """On a terminal the status line, the user's words and the reply all appear."""
    out = io.StringIO()
    display = RichDisplay(Console(file=out, force_terminal=True, color_system=None, width=100))
    display.show(AgentStatus("listening"))
    display.show(UserTranscript("item_1", "What time is it?"))
    display.show(TextDelta("It is ten past ten."))
    text = out.getvalue()
    display.show(DONE)
    display.close()
    assert "listening" in text and "Ctrl-C to quit" in text
    assert "It is ten past ten." in text
    assert "you: What time is it?" in out.getvalue()


def test_lines_printed_while_the_live_view_redraws_are_never_drawn_over() -> None:
    """The live view redrawn 2,000 times a second while turns are printed above it and another
    thread prints stray lines: every turn's ``you:`` line and reply, and every stray line, stay
    on the emulated screen. With rich's own refresh thread (no lock between its redraws and
    the prints) about one turn in ten lost its ``you:`` line here, as a CI terminal once did."""
    pyte = pytest.importorskip("pyte")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=100, height=2000)
    display = RichDisplay(console, refresh_per_second=2000)
    turns = 150

    def stray_prints() -> None:
        for i in range(turns):
            print(f"stray {i:04d}")
            time.sleep(0.0005)

    printer = threading.Thread(target=stray_prints)
    printer.start()
    for i in range(turns):
        call = ToolCall(f"c{i:08d}", "get_time", {"n": i})
        display.show(UserClip(f"item_{i}", 1.0, True))
        display.show(call)
        display.show(ToolResult(call.id, "get_time", "{}", duration_s=0.01))
        display.show(TextDelta(f"reply {i:04d}"))
        display.show(TurnDone(f"reply {i:04d}", tool_calls=(call,)))
        display.show(UserTranscript(f"item_{i}", f"said {i:04d}"))
    printer.join()
    display.close()
    screen = pyte.Screen(100, 2000)
    pyte.Stream(screen).feed(out.getvalue())
    shown = [line.rstrip() for line in screen.display]
    said = [n for n, line in enumerate(shown) if line.startswith("you: said ")]
    assert [shown[n] for n in said] == [f"you: said {i:04d}" for i in range(turns)]
    replies = [line for line in shown if line.startswith("assistant: reply ")]
    assert replies == [f"assistant: reply {i:04d}" for i in range(turns)]
    strays = [line for line in shown if line.startswith("stray ")]
    assert strays == [f"stray {i:04d}" for i in range(turns)]


def test_auto_mode_is_plain_when_the_output_is_not_a_terminal() -> None:
    """``auto`` picks the plain display for a pipe; an unknown mode is refused."""
    assert isinstance(make_display("auto", io.StringIO()), PlainDisplay)
    with pytest.raises(ValueError, match="display mode"):
        make_display("fancy", io.StringIO())
