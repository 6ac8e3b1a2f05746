"""Messages that cross stage boundaries.

Every stage imports this module and none imports another stage. Events are small frozen
dataclasses; values carry their unit in the field name (``start_ms``, ``duration_s``).
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SAMPLE_RATE_HZ = 16_000
"""The sample rate of every PCM stream inside the assistant (Voxtral's input rate)."""


# --- audio front-end -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The VAD heard speech begin; ``start_ms`` is stream time, prefix padding included."""

    start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechEndLikely:
    """The first silent frame after speech: the end is likely, but the hangover is still running.

    Later stages may start work preemptively; a ``SpeechStopped`` (or more speech) follows.
    """

    at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The VAD decided speech ended (after the full silence hangover)."""

    end_ms: int


@dataclass(frozen=True, slots=True, eq=False)
class Utterance:
    """One complete stretch of speech as 16 kHz mono int16 PCM."""

    pcm: np.ndarray
    """Samples, int16, mono, at ``sample_rate_hz``."""
    start_ms: int
    """Stream time of the first sample (prefix padding included)."""
    end_ms: int
    """Stream time just after the last sample."""
    truncated: bool = False
    """True when the utterance was cut at ``max_utterance_s`` and speech continues."""
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.pcm) / self.sample_rate_hz


# --- model output --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply text, as soon as it is decoded."""

    text: str


TOOL_CALL_ID_LENGTH = 9
"""Mistral's formats use nine alphanumeric characters for a tool-call id."""


def new_tool_call_id() -> str:
    """A fresh tool-call id: nine random alphanumeric characters."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(TOOL_CALL_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model asked for, with parsed arguments."""

    id: str
    """Nine alphanumeric characters, from the model (v11) or assigned."""
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        """The arguments as compact JSON text, as they travel in prompts and on the wire."""
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class MalformedToolCall:
    """The model started a tool call that could not be parsed; ``raw_text`` is what it wrote."""

    raw_text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """What one generation consumed."""

    audio_s: float = 0.0
    prompt_tokens: int = 0
    audio_tokens: int = 0
    generated_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timings:
    """Where the time of one generation went, in seconds from the request reaching the worker."""

    queue_s: float = 0.0
    """Waiting for the model thread."""
    time_to_first_token_s: float | None = None
    total_s: float = 0.0
    """From the request reaching the worker to the last token."""


FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The end of one model generation."""

    text: str
    """The reply text (without tool-call syntax)."""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)


@dataclass(frozen=True, slots=True)
class Transcription:
    """What the user said, from Voxtral's transcription mode."""

    text: str
    language: str | None = None
    """The language the model announced (``lang:xx``), or the one it was asked for."""
    finish_reason: FinishReason = "stop"
    """``length`` when the text was cut off at the token limit."""


PieceCut = Literal["pause", "hard", "end"]
"""Where a piece of a long recording ends: at a pause, cut hard mid-speech (no pause within
the longest piece), or at the end of the recording."""


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """One piece of a long recording and what was said in it (no word timestamps)."""

    index: int
    """Position of the piece in the recording, from 0."""
    start_ms: int
    """Where the piece's audio begins in the recording."""
    end_ms: int
    """Where the piece's audio ends in the recording."""
    text: str
    language: str | None = None
    """Announced by the model for this piece, or the language it was asked for."""
    cut: PieceCut = "pause"
    finish_reason: FinishReason = "stop"
    """``length`` when the piece's text was cut off at the token limit."""


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Something went wrong; the stream it appears in ends after it unless stated otherwise."""

    code: str
    """Short machine-readable kind, e.g. ``model_error``, ``context_overflow``, ``bad_audio``."""
    message: str


# --- tools ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolStarted:
    """A tool handler began running for ``call``."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call, as the model will read it."""

    call_id: str
    name: str
    content: str
    """JSON text handed back to the model (an error object when ``ok`` is False)."""
    ok: bool = True
    duration_s: float = 0.0
    error: str | None = None
    """Short description of the failure (type and message), never a traceback or a secret."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """Something a tool wants said later, unprompted (a timer fired)."""

    text: str
    source: str
    """The tool (or timer) that produced it, e.g. ``set_timer``."""
    conversation_id: str | None = None
    """The conversation whose tool call started it; None means it is for every conversation."""


# --- dialogue ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """What the user said in the audio turn ``item_id`` (from transcription mode)."""

    item_id: str
    text: str
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmationRequested:
    """A ``confirm: true`` tool waits for a yes/no: the next user turn answers."""

    call: ToolCall
    prompt: str
    """What to ask the user, e.g. "Unlock the front door? Say yes or no."."""


@dataclass(frozen=True, slots=True)
class ClientToolRequested:
    """The model called a tool declared by the client; the client runs it and sends the output."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    """Latency of one turn in milliseconds, measured from the end of the user's speech.

    ``None`` where the step did not happen (no tool ran, no text was produced, text input).
    """

    speech_end_to_commit_ms: float | None = None
    speech_end_to_first_delta_ms: float | None = None
    speech_end_to_first_tool_ms: float | None = None
    speech_end_to_done_ms: float | None = None
    tool_durations_ms: dict[str, float] = field(default_factory=dict)
    """Per tool-call id."""
    audio_s: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    model_calls: int = 0


@dataclass(frozen=True, slots=True)
class TurnDone:
    """A dialogue turn ended: the final reply (after any tool rounds), or why it stopped."""

    text: str
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    metrics: TurnMetrics = field(default_factory=TurnMetrics)


# --- desktop agent -------------------------------------------------------------------------

AgentState = Literal[
    "loading",
    "waiting_for_wake_word",
    "listening",
    "hearing",
    "thinking",
    "calling_tool",
    "speaking",
    "stopped",
]
"""What the desktop agent is doing, as its status line shows it."""


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The desktop agent changed what it is doing; ``detail`` says more (a tool name, a model)."""

    state: AgentState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class WakeWordDetected:
    """The wake word was heard; ``at_ms`` is stream time (where the microphone had got to)."""

    phrase: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class SpokenSentence:
    """One sentence of a reply was played through the speaker."""

    text: str
    duration_s: float
    """Seconds of it that were played (less than its length when cut short)."""
    interrupted: bool = False
    """True when a barge-in stopped it before its end."""


ModelEvent = TextDelta | ToolCall | MalformedToolCall | ResponseDone | ErrorEvent
"""What ``ModelWorker.respond`` yields."""

DialogueEvent = (
    UserTranscript
    | TextDelta
    | ToolCall
    | MalformedToolCall
    | ConfirmationRequested
    | ClientToolRequested
    | ToolStarted
    | ToolResult
    | TurnDone
    | ErrorEvent
)
"""What ``Dialogue.respond`` yields."""
