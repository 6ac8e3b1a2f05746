"""Per-turn latency and usage: the moments of one dialogue turn, turned into ``TurnMetrics``."""

from __future__ import annotations

import time
from collections.abc import Callable

from assistant.events import ResponseDone, ToolResult, TurnMetrics


def _ms(start_s: float, end_s: float | None) -> float | None:
    return None if end_s is None else round((end_s - start_s) * 1000.0, 3)


class TurnClock:
    """Collects when things happened in one turn, on the ``time.monotonic`` clock.

    Latencies are measured from ``speech_end_s`` (the end of the user's speech); for a typed
    turn, which has no speech end, from ``committed_s`` (when the input was added).
    """

    def __init__(
        self,
        speech_end_s: float | None,
        committed_s: float,
        audio_s: float = 0.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self._speech_end_s = speech_end_s
        self._committed_s = committed_s
        self._start_s = speech_end_s if speech_end_s is not None else committed_s
        self._audio_s = audio_s
        self._first_delta_s: float | None = None
        self._first_tool_s: float | None = None
        self._done_s: float | None = None
        self._tool_durations_ms: dict[str, float] = {}
        self._prompt_tokens = 0
        self._generated_tokens = 0
        self._model_calls = 0
        self._preempted = False

    def text_delta(self) -> None:
        """A piece of reply text went out."""
        if self._first_delta_s is None:
            self._first_delta_s = self._now()

    def tool_started(self) -> None:
        """A tool began running (or a client was asked to run one)."""
        if self._first_tool_s is None:
            self._first_tool_s = self._now()

    def tool_finished(self, result: ToolResult) -> None:
        """A tool's result arrived."""
        self._tool_durations_ms[result.call_id] = round(result.duration_s * 1000.0, 3)

    def model_call(self, done: ResponseDone) -> None:
        """One generation ended; count its tokens."""
        self._model_calls += 1
        self._prompt_tokens += done.usage.prompt_tokens
        self._generated_tokens += done.usage.generated_tokens

    def preempted(self) -> None:
        """The first model call was a speculation started before the end of speech was
        confirmed, and the turn adopted it."""
        self._preempted = True

    def done(self) -> None:
        """The response is complete (the first call counts)."""
        if self._done_s is None:
            self._done_s = self._now()

    def metrics(self) -> TurnMetrics:
        """Everything measured so far."""
        commit_ms = None
        if self._speech_end_s is not None:
            commit_ms = _ms(self._speech_end_s, self._committed_s)
        return TurnMetrics(
            speech_end_to_commit_ms=commit_ms,
            speech_end_to_first_delta_ms=_ms(self._start_s, self._first_delta_s),
            speech_end_to_first_tool_ms=_ms(self._start_s, self._first_tool_s),
            speech_end_to_done_ms=_ms(self._start_s, self._done_s),
            tool_durations_ms=dict(self._tool_durations_ms),
            audio_s=round(self._audio_s, 3),
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated_tokens,
            model_calls=self._model_calls,
            preempted=self._preempted,
        )


def summary(metrics: TurnMetrics) -> str:
    """One log line's worth of a turn's metrics."""
    return (
        f"first text {metrics.speech_end_to_first_delta_ms} ms, "
        f"first tool {metrics.speech_end_to_first_tool_ms} ms, "
        f"done {metrics.speech_end_to_done_ms} ms, {metrics.model_calls} model call(s), "
        f"{metrics.prompt_tokens} prompt / {metrics.generated_tokens} generated tokens, "
        f"{metrics.audio_s:.1f} s audio"
    )
