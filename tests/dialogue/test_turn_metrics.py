"""TurnClock: latencies from the end of speech, on an injected clock."""

from __future__ import annotations

from assistant.conversation.metrics import TurnClock
from assistant.events import ResponseDone, ToolResult, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 10.0

    def __call__(self) -> float:
        return self.now_s


def test_latencies_count_from_the_end_of_speech() -> None:
    """Commit, first delta, first tool and done are measured from speech end; firsts stick."""
    clock = FakeClock()
    turn = TurnClock(speech_end_s=9.5, committed_s=9.6, audio_s=1.25, now=clock)
    clock.now_s = 10.0
    turn.text_delta()
    clock.now_s = 10.2
    turn.text_delta()
    turn.tool_started()
    turn.tool_finished(ToolResult("abcdefghi", "x", "{}", duration_s=0.05))
    turn.model_call(ResponseDone("", usage=Usage(prompt_tokens=400, generated_tokens=12)))
    turn.model_call(ResponseDone("", usage=Usage(prompt_tokens=420, generated_tokens=8)))
    clock.now_s = 10.5
    turn.done()
    m = turn.metrics()
    assert m.speech_end_to_commit_ms == 100.0
    assert m.speech_end_to_first_delta_ms == 500.0
    assert m.speech_end_to_first_tool_ms == 700.0
    assert m.speech_end_to_done_ms == 1000.0
    assert m.tool_durations_ms == {"abcdefghi": 50.0}
    assert (m.prompt_tokens, m.generated_tokens, m.model_calls) == (820, 20, 2)
    assert m.audio_s == 1.25


def test_typed_turn_counts_from_the_commit() -> None:
    """Without a speech end, latencies start at the commit and the commit latency is None."""
    clock = FakeClock()
    turn = TurnClock(speech_end_s=None, committed_s=10.0, now=clock)
    clock.now_s = 10.3
    turn.done()
    m = turn.metrics()
    assert m.speech_end_to_commit_ms is None and m.speech_end_to_done_ms == 300.0
    assert m.speech_end_to_first_delta_ms is None
