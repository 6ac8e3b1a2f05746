"""The multipart form of ``POST /v1/audio/transcriptions``, parsed with the standard library.

OpenAI's fields: ``file`` (the audio), ``model``, ``language``, ``temperature`` (only greedy is
offered: anything above 0 is refused rather than ignored), ``response_format`` (``json`` or
``text``); and vLLM's ``max_completion_tokens``. Other fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

RESPONSE_FORMATS = frozenset({"json", "text"})


class FormError(ValueError):
    """The form is unusable; the message names the field."""


@dataclass(frozen=True)
class TranscriptionForm:
    """What a transcription request asks for."""

    audio: bytes
    language: str | None = None
    response_format: str = "json"
    max_tokens: int | None = None


def parse_transcription_form(content_type: str, body: bytes) -> TranscriptionForm:
    """The form in ``body``; ``FormError`` when it is not one or lacks the file."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise FormError("send multipart/form-data with the audio in a 'file' field")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FormError("the multipart body could not be read (boundary missing or wrong)")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    audio = fields.get("file")
    if not audio:
        raise FormError("file: the audio is missing")
    text = {name: value.decode("utf-8", "replace").strip() for name, value in fields.items()}
    response_format = text.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise FormError(f"response_format: one of {sorted(RESPONSE_FORMATS)}")
    try:
        temperature = float(text.get("temperature") or 0.0)
        max_tokens = (
            int(text["max_completion_tokens"]) if text.get("max_completion_tokens") else None
        )
    except ValueError:
        raise FormError("temperature and max_completion_tokens must be numbers") from None
    if temperature != 0.0:
        raise FormError("temperature: transcription here is greedy (0) only")
    if max_tokens is not None and max_tokens < 1:
        raise FormError("max_completion_tokens must be at least 1")
    return TranscriptionForm(audio, text.get("language") or None, response_format, max_tokens)
