"""Prompts through mistral-common: chat requests (with tools) and transcription requests.

``VoxtralProcessor.apply_chat_template`` drops tools, so every prompt is encoded by
mistral-common's ``MistralTokenizer`` directly; the audio it returns (padded to whole 30 s
windows) feeds the feature extractor.

Instructions below tokenizer v13: mistral-common refuses a system prompt in a conversation that
holds audio. ``place_instructions`` then moves the system text into the FIRST user message, as a
text chunk in front of its other content, so the instructions stay at the start of the
conversation (where they also never break the reusable prompt prefix of later turns).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from mistral_common.protocol.instruct.tool_calls import Tool
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

Tokenizer: TypeAlias = "MistralTokenizer[Any, Any, Any, Any, Any]"
"""mistral-common's tokenizer, whatever its message and tokenized types."""

AUDIO_TOKEN_ID = 24
"""transformers scatters audio embeddings where ``input_ids == 24``."""

VERSIONS_WITH_SYSTEM_AND_AUDIO = frozenset({"v13"})


class PromptError(ValueError):
    """The messages cannot form a prompt (wrong order, unsupported content, bad audio)."""


@dataclass(frozen=True, eq=False)
class Clip:
    """One audio clip of a prompt, padded to whole 30 s windows by mistral-common."""

    samples: np.ndarray
    """float32, 16 kHz, a multiple of 30 s long."""
    key: bytes
    """Content hash: the same clip in a later turn has the same key."""
    audio_s: float
    """Length before padding."""


@dataclass(frozen=True, eq=False)
class EncodedPrompt:
    """Token ids of a prompt and its audio clips, in the order their ``[AUDIO]`` runs appear."""

    tokens: list[int]
    clips: list[Clip]

    @property
    def audio_tokens(self) -> int:
        """How many ``[AUDIO]`` placeholders the prompt holds."""
        return sum(1 for t in self.tokens if t == AUDIO_TOKEN_ID)

    @property
    def audio_s(self) -> float:
        """Seconds of audio (before padding) in the prompt."""
        return sum(c.audio_s for c in self.clips)


def tokenizer_version(tokenizer: Tokenizer) -> str:
    """``"v7"``, ``"v11"`` or ``"v13"``."""
    return str(tokenizer.instruct_tokenizer.tokenizer.version.value)


def _has_audio(message: Any) -> bool:
    from mistral_common.protocol.instruct.chunk import AudioChunk, AudioURLChunk

    content = getattr(message, "content", None)
    return isinstance(content, list) and any(
        isinstance(c, (AudioChunk, AudioURLChunk)) for c in content
    )


def place_instructions(messages: Sequence[Any], version: str) -> list[Any]:
    """Messages with system prompts moved into the first user turn where the version needs it."""
    from mistral_common.protocol.instruct.chunk import TextChunk
    from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage

    messages = list(messages)
    systems = [m for m in messages if isinstance(m, SystemMessage)]
    if not systems or version in VERSIONS_WITH_SYSTEM_AND_AUDIO:
        return messages
    if not any(_has_audio(m) for m in messages):
        return messages
    text = "\n\n".join(m.content if isinstance(m.content, str) else _text_of(m) for m in systems)
    rest = [m for m in messages if not isinstance(m, SystemMessage)]
    for i, message in enumerate(rest):
        if isinstance(message, UserMessage):
            content = message.content
            chunks = [TextChunk(text=content)] if isinstance(content, str) else list(content)
            rest[i] = UserMessage(content=[TextChunk(text=text), *chunks])
            return rest
    raise PromptError("a conversation with instructions needs at least one user message")


def _text_of(message: Any) -> str:
    return "".join(getattr(chunk, "text", "") for chunk in message.content)


class _RememberedAudio:
    """Wraps mistral-common's audio encoder so a clip seen in an earlier turn is not redone.

    Every turn re-encodes the whole conversation; without this, each earlier clip would be
    decoded, resampled, padded and hashed again, and a turn would cost more the longer the
    conversation. Keeps the ``max_clips`` most recent clips.
    """

    def __init__(self, encoder: Any, max_clips: int = 256) -> None:
        self._encoder = encoder
        self._max_clips = max_clips
        self._encodings: dict[str | bytes, Any] = {}
        self._keys: dict[int, bytes] = {}
        # count_tokens runs on callers' threads while the model thread builds prompts.
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def __call__(self, chunk: Any) -> Any:
        source = getattr(chunk, "input_audio", None)
        if source is None:  # a URL chunk: nothing stable to remember it by
            return self._encoder(chunk)
        with self._lock:
            encoding = self._encodings.pop(source, None)
            if encoding is None:
                encoding = self._encoder(chunk)
                self._keys[id(encoding.audio)] = _content_key(encoding.audio.audio_array)
            self._encodings[source] = encoding  # most recent last
            while len(self._encodings) > self._max_clips:
                oldest = next(iter(self._encodings))
                self._keys.pop(id(self._encodings.pop(oldest).audio), None)
            return encoding

    def key(self, audio: Any) -> bytes:
        """The content hash of an ``Audio`` this encoder produced (computed once)."""
        with self._lock:
            known = self._keys.get(id(audio))
        return known if known is not None else _content_key(audio.audio_array)


def _content_key(samples: np.ndarray) -> bytes:
    data = np.ascontiguousarray(samples, dtype=np.float32).tobytes()
    return hashlib.blake2b(data, digest_size=16).digest()


def _clips(
    audios: Sequence[Any], lengths_s: Sequence[float], key: Callable[[Any], bytes]
) -> list[Clip]:
    for number, audio in enumerate(audios, start=1):
        # mistral-common lets an empty clip through with no [AUDIO] tokens; the encoder would
        # then fail, and with it every request batched with this one.
        if audio.audio_array.size == 0:
            raise PromptError(f"audio clip {number} of the prompt holds no samples")
    return [
        Clip(
            samples=np.ascontiguousarray(audio.audio_array, dtype=np.float32),
            key=key(audio),
            audio_s=length_s,
        )
        for audio, length_s in zip(audios, lengths_s, strict=True)
    ]


@functools.lru_cache(maxsize=256)
def _duration_s(encoded_audio: str | bytes) -> float:
    """Length of an AudioChunk's audio; memoized because history clips recur every turn."""
    from mistral_common.protocol.instruct.chunk import AudioChunk
    from mistral_common.tokens.tokenizers.audio import Audio

    return float(Audio.from_audio_chunk(AudioChunk(input_audio=encoded_audio)).duration)


def _audio_lengths_s(messages: Sequence[Any]) -> list[float]:
    from mistral_common.protocol.instruct.chunk import AudioChunk

    lengths: list[float] = []
    for message in messages:
        content = getattr(message, "content", None)
        if isinstance(content, list):
            lengths.extend(_duration_s(c.input_audio) for c in content if isinstance(c, AudioChunk))
    return lengths


class PromptBuilder:
    """Encodes conversations and transcription requests with one ``MistralTokenizer``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.version = tokenizer_version(tokenizer)
        instruct = tokenizer.instruct_tokenizer
        encoder = getattr(instruct, "audio_encoder", None)
        if encoder is not None and not isinstance(encoder, _RememberedAudio):
            encoder = _RememberedAudio(encoder)
            instruct.audio_encoder = encoder  # type: ignore[assignment]
        self._audio = encoder

    def chat(self, messages: Sequence[Any], tools: Sequence[Tool] | None = None) -> EncodedPrompt:
        """Encode a conversation that ends with a user or tool message."""
        from mistral_common.exceptions import MistralCommonException
        from mistral_common.protocol.instruct.request import ChatCompletionRequest

        if not messages:
            raise PromptError("a conversation needs at least one message")
        placed = place_instructions(messages, self.version)
        try:
            request: ChatCompletionRequest[Any] = ChatCompletionRequest(
                messages=placed, tools=list(tools) if tools else None
            )
            tokenized = self.tokenizer.encode_chat_completion(request)
        except (MistralCommonException, ValueError) as exc:
            raise PromptError(f"cannot build the prompt: {exc}") from None
        lengths = _audio_lengths_s(placed)
        if len(lengths) != len(tokenized.audios):
            # Audio given by URL chunks: the padded length is all that is known.
            lengths = [len(a.audio_array) / a.sampling_rate for a in tokenized.audios]
        return EncodedPrompt(list(tokenized.tokens), _clips(tokenized.audios, lengths, self._key))

    def transcription(self, chunk: Any, language: str | None = None) -> EncodedPrompt:
        """Encode a transcription request for one ``AudioChunk`` (``lang:xx`` when given)."""
        from mistral_common.exceptions import MistralCommonException
        from mistral_common.protocol.transcription.request import TranscriptionRequest

        try:
            request = TranscriptionRequest(audio=chunk.input_audio, language=language)
            tokenized = self.tokenizer.encode_transcription(request)
        except (MistralCommonException, ValueError) as exc:
            raise PromptError(f"cannot build the transcription prompt: {exc}") from None
        length_s = _duration_s(chunk.input_audio)
        return EncodedPrompt(
            list(tokenized.tokens), _clips(tokenized.audios, [length_s], self._key)
        )

    def _key(self, audio: Any) -> bytes:
        if isinstance(self._audio, _RememberedAudio):
            return self._audio.key(audio)
        return _content_key(audio.audio_array)
