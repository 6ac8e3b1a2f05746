"""How a conversation behaves: ``DialogueSettings``, every field with a working default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assistant.conversation.confirmation import DEFAULT_YES_WORDS
from assistant.model.worker import GenerationParams

TOOL_ROUND_LIMIT_MESSAGE = "Sorry, I could not finish that: it took too many steps."


@dataclass
class DialogueSettings:
    """How a conversation behaves; every field has a working default."""

    instructions: str | None = None
    """Persona / instruction text. From tokenizer v13 it is a system prompt; below v13, where
    mistral-common refuses a system prompt next to audio, the model worker moves it into the
    first user message as a text chunk."""
    max_tool_rounds: int = 4
    """Tool rounds per turn; a reply that still calls tools after that many is not run, and the
    user hears ``tool_round_limit_message``."""
    interrupt_response: bool = True
    """Barge-in: user speech during a reply cancels it (``interrupt``)."""
    min_interrupt_speech_ms: int = 300
    """Shorter speech (a cough, "mm-hm") does not interrupt."""
    transcribe_user: bool = True
    """Also run each user clip through transcription mode (``UserTranscript`` events)."""
    transcription_language: str | None = None
    """ISO-639-1 code ("en", "fr") the user transcripts are made in; None: the model detects it."""
    context_budget_tokens: int | None = None
    """Most prompt tokens per request; None: the model's context minus ``max_new_tokens``."""
    keep_dropped_transcripts: bool = True
    """Over the budget, replace old clips by their transcripts before dropping whole turns."""
    client_tool_timeout_s: float = 60.0
    """How long a client tool may take before its call fails with a timeout result."""
    confirm_yes_words: tuple[str, ...] = DEFAULT_YES_WORDS
    """Words and phrases that confirm a ``confirm`` tool."""
    session_log_path: Path | None = None
    """Append every turn to this JSONL file (see ``assistant.conversation.session_log``)."""
    log_audio: bool = False
    """Save user clips as WAV files next to the session log."""
    params: GenerationParams = field(default_factory=GenerationParams)
    """Sampling and the reply length of every model call."""
    tool_round_limit_message: str = TOOL_ROUND_LIMIT_MESSAGE
    """What the user hears when the tool-round limit stops a turn."""

    def __post_init__(self) -> None:
        if self.max_tool_rounds < 0:
            raise ValueError("max_tool_rounds must be 0 or more")
        if self.min_interrupt_speech_ms < 0:
            raise ValueError("min_interrupt_speech_ms must be 0 or more")
        if self.context_budget_tokens is not None and self.context_budget_tokens < 1:
            raise ValueError("context_budget_tokens must be positive")
        if self.client_tool_timeout_s <= 0:
            raise ValueError("client_tool_timeout_s must be positive")
