"""What a ``/v1/realtime`` client configured: ``SessionState``, changed by ``session.update``.

It is a frozen value: ``apply`` returns the state after an update, so that a refused update
changes nothing, and ``to_wire`` writes the ``session`` object of ``session.created`` /
``session.updated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from assistant.server.realtime.protocol import SessionConfig

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
"""OpenAI's built-in voice names: accepted, and spoken by the server's own voice."""


EAGER_SILENCE_MS: dict[str, int | None] = {"low": None, "medium": 250, "auto": 250, "high": 100}
"""``semantic_vad``'s eagerness → the eager end of turn (``vad.eager_silence_ms``): how much
silence ends a turn once the preemptive reply has begun a tool call (None: no eager end)."""


@dataclass(frozen=True)
class TurnDetection:
    """Server VAD settings of a session (``None`` on the session means manual commits)."""

    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str | None = None
    """``semantic_vad``'s eagerness (``low``, ``medium``, ``high``, ``auto``); None for
    ``server_vad``."""


@dataclass(frozen=True)
class SessionState:
    """What a client configured with ``session.update``; ``apply`` returns the next state."""

    model: str
    instructions: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    """Client-side tools as Realtime function dicts (``type``, ``name``, ``description``...)."""
    input_rate_hz: int = 24_000
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcription_language: str | None = None
    transcribe: bool = False
    max_output_tokens: int | None = None
    speak: bool = False
    """Replies are spoken (``output_modalities: ["audio"]``) rather than written."""
    output_rate_hz: int = 24_000
    voice: str | None = None
    """The voice the client named (None: the server's voice)."""
    speed: float = 1.0

    @property
    def engine_voice(self) -> str | None:
        """The synthesizer's voice: None (the server's) for OpenAI's voice names."""
        return None if self.voice in OPENAI_VOICES else self.voice

    def apply(self, update: SessionConfig) -> SessionState:
        """The state after ``update``: absent fields keep their values, ``null`` clears."""
        changes: dict[str, Any] = {}
        if update.output_modalities is not None:
            changes["speak"] = update.output_modalities == ["audio"]
        audio_out = update.audio.output if update.audio else None
        if audio_out is not None:
            if audio_out.format is not None:
                changes["output_rate_hz"] = audio_out.format.rate
            if "voice" in audio_out.model_fields_set:
                changes["voice"] = audio_out.voice
            if "speed" in audio_out.model_fields_set:
                changes["speed"] = 1.0 if audio_out.speed is None else audio_out.speed
        if "instructions" in update.model_fields_set:
            changes["instructions"] = update.instructions
        if update.tools is not None:
            changes["tools"] = tuple(t.model_dump() for t in update.tools)
        if "max_output_tokens" in update.model_fields_set:
            limit = update.max_output_tokens
            changes["max_output_tokens"] = limit if isinstance(limit, int) else None
        audio_in = update.audio.input if update.audio else None
        if audio_in is not None:
            if audio_in.format is not None:
                changes["input_rate_hz"] = audio_in.format.rate
            if "turn_detection" in audio_in.model_fields_set:
                vad = audio_in.turn_detection
                changes["turn_detection"] = (
                    None if vad is None else TurnDetection(**vad.model_dump(exclude={"type"}))
                )
            if "transcription" in audio_in.model_fields_set:
                changes["transcribe"] = audio_in.transcription is not None
                if audio_in.transcription is not None:
                    changes["transcription_language"] = audio_in.transcription.language
        return replace(self, **changes)

    def to_wire(self, session_id: str, vad_defaults: dict[str, Any]) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` / ``session.updated``."""
        vad = self.turn_detection
        turn_detection: dict[str, Any] | None = None
        if vad is not None and vad.eagerness is not None:
            turn_detection = {
                "type": "semantic_vad",
                "eagerness": vad.eagerness,
                "create_response": vad.create_response,
                "interrupt_response": vad.interrupt_response,
            }
        elif vad is not None:
            turn_detection = {"type": "server_vad", **vad_defaults}
            turn_detection.update(
                {k: v for k, v in vars(vad).items() if v is not None and k != "eagerness"},
            )
        transcription = (
            {"model": self.model, "language": self.transcription_language}
            if self.transcribe
            else None
        )
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": ["audio" if self.speak else "text"],
            "instructions": self.instructions or "",
            "tools": list(self.tools),
            "tool_choice": "auto",
            "max_output_tokens": (
                "inf" if self.max_output_tokens is None else self.max_output_tokens
            ),
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.input_rate_hz},
                    "turn_detection": turn_detection,
                    "transcription": transcription,
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": self.output_rate_hz},
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
        }
