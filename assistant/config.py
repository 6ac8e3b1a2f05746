"""Settings: defaults < config file < ``VOXTRAL_ASSISTANT_*`` environment variables < CLI flags.

Nested groups use a double underscore in the environment, e.g.
``VOXTRAL_ASSISTANT_VAD__SILENCE_DURATION_MS=700`` or ``VOXTRAL_ASSISTANT_SERVER__PORT=9000``.
The config file is YAML with the same structure (``vad: {silence_duration_ms: 700}``); it is
read from ``--config FILE`` or ``VOXTRAL_ASSISTANT_CONFIG``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_MODEL = "mistralai/Voxtral-Mini-3B-2507"
VLLM_MAX_CLIPS = 5
"""vLLM takes at most 5 audio clips per Voxtral request (the whole history counts)."""
ENV_PREFIX = "VOXTRAL_ASSISTANT_"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MIB = 2**20

DEMO_MODEL = "demo"
"""The ``--model`` name of the demo checkpoint shipped inside the package (``demo/``): a small
Voxtral trained by ``python -m training`` that knows only the shipped ``tools.yaml``. Its chat
replies are greedy unless ``model.temperature`` is set: its figures
(``benchmarks/demo_accuracy.py``) are greedy, and at the chat default of 0.2 a model this small
changes its mind between runs."""


def _split_commas(value: Any) -> Any:
    """A list from the environment arrives as one string: "https://a,https://b"."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def iso_639_1(code: str) -> str:
    """``code`` as the lower-case ISO 639-1 code mistral-common accepts (``EN`` -> ``en``);
    ``ValueError`` naming it otherwise."""
    from pydantic_extra_types.language_code import LanguageAlpha2

    try:
        return str(TypeAdapter(LanguageAlpha2).validate_python(code.lower()))
    except ValidationError:
        raise ValueError(
            f"{code!r} is not an ISO 639-1 language code (two letters, like en or fr)"
        ) from None


class ConfigError(Exception):
    """Settings are invalid; the message says which value and why, in one sentence each."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class GenerationParams:
    """How one reply is generated; ``temperature`` 0 means greedy decoding.

    The chat defaults of ``model.max_new_tokens`` / ``temperature`` / ``top_p`` are these.
    """

    max_new_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 0.95
    seed: int | None = None
    """Seeds sampling for reproducible replies; None leaves the generator as it is."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")


_SAMPLING = GenerationParams()


class ModelSettings(_Group):
    """Which checkpoint to run, where, how it samples, and how the model thread works."""

    id: str = Field(
        DEFAULT_MODEL,
        description="Hugging Face hub id, local folder, or demo (the small demo model shipped "
        "in the package: it knows only the shipped tools.yaml; greedy unless model.temperature "
        "is set).",
    )
    device: str = Field(
        "auto",
        description="'auto' (CUDA, else Apple's MPS, else the CPU), 'cpu', 'cuda', 'cuda:1', "
        "'mps'.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="'auto' is bfloat16 on GPU and float32 on CPU."
    )
    max_new_tokens: int = Field(
        _SAMPLING.max_new_tokens, ge=1, le=32768, description="Longest reply, in tokens."
    )
    temperature: float = Field(
        _SAMPLING.temperature, ge=0.0, le=2.0, description="Chat sampling temperature (0: greedy)."
    )
    top_p: float = Field(_SAMPLING.top_p, gt=0.0, le=1.0, description="Chat nucleus sampling.")
    prefix_reuse: bool = Field(
        True, description="Keep each conversation's KV cache; prefill only the new part of a turn."
    )
    guided_tool_calls: bool = Field(
        True,
        description="A tool call the model writes follows the tools' JSON schemas (names, enums, "
        "required fields, bounds); local backend, v7 tokenizers.",
    )
    cache_budget_bytes: int = Field(
        4 * 1024**3, ge=0, description="Memory for KV caches and clip embeddings (LRU eviction)."
    )
    static_cache_tokens: int | None = Field(
        None, ge=1, description="Static KV caches of this many positions (needed to compile)."
    )
    compile_backend: str | None = Field(
        None, description="torch.compile the decode step with this backend, e.g. 'inductor'."
    )
    max_batch: int = Field(
        16, ge=1, le=256, description="Most waiting requests served by one batched model step."
    )
    max_waiting: int = Field(
        256, ge=1, description="Most requests waiting for the model thread; more are 'overloaded'."
    )
    encoder_batch_windows: int = Field(
        16, ge=1, le=1024, description="Most 30 s audio windows encoded by one encoder call."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
            return value
        raise ValueError(
            f"unknown device {value!r}: use auto, cpu, cuda, cuda:N (the Nth GPU) or mps"
        )

    backend: Literal["local", "vllm"] = Field(
        "local",
        description="'local': transformers in this process; 'vllm': the OpenAI-compatible API "
        "of a vLLM server (or of another voxtral-assistant serve) at 'url'.",
    )
    url: str | None = Field(
        None, description="The remote server's OpenAI API root, e.g. http://127.0.0.1:8001/v1."
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable that holds the remote server's API key.",
    )
    session_header: str = Field(
        "X-Session-Id",
        pattern=r"^[A-Za-z0-9-]*$",
        description="Header carrying the conversation id to the remote server, for routers "
        "that keep a conversation on one replica; empty: none.",
    )
    max_clips: int | None = Field(
        None,
        ge=1,
        description=f"Most audio clips per request; None: {VLLM_MAX_CLIPS} with the vllm "
        "backend, no limit locally.",
    )
    max_in_flight: int = Field(
        64, ge=1, description="Remote requests running at once; more wait for a slot."
    )
    connect_timeout_s: float = Field(5.0, gt=0.0, description="Connecting to the remote server.")
    read_timeout_s: float = Field(
        120.0, gt=0.0, description="Longest wait for the remote server's next bytes."
    )

    @model_validator(mode="after")
    def _compile_needs_static_cache(self) -> ModelSettings:
        if self.compile_backend and self.static_cache_tokens is None:
            raise ValueError(
                "compile_backend needs static_cache_tokens (compiled decode is static)"
            )
        return self

    def generation_params(self, max_new_tokens: int | None = None) -> GenerationParams:
        """The chat sampling configured here (``max_new_tokens`` overrides the reply length);
        greedy for the demo model unless ``temperature`` was set (``DEMO_MODEL``)."""
        temperature = self.temperature
        if self.id == DEMO_MODEL and "temperature" not in self.model_fields_set:
            temperature = 0.0
        return GenerationParams(
            max_new_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
            temperature=temperature,
            top_p=self.top_p,
        )

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ModelSettings:
        if self.backend == "vllm" and not self.url:
            raise ValueError(
                "the vllm backend needs the server's URL: pass --model-url "
                "http://HOST:PORT/v1 or set VOXTRAL_ASSISTANT_MODEL__URL"
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self

    @property
    def clip_limit(self) -> int | None:
        """The most audio clips per request this backend takes (None: no limit)."""
        if self.max_clips is not None:
            return self.max_clips
        return VLLM_MAX_CLIPS if self.backend == "vllm" else None


class VadSettings(_Group):
    """Turn detection; defaults follow OpenAI's server_vad (300 ms padding, 500 ms silence)."""

    backend: Literal["webrtc", "silero"] = Field(
        "webrtc", description="webrtc (webrtcvad) or silero (the model bundled with silero-vad)."
    )
    aggressiveness: int = Field(3, ge=0, le=3, description="webrtcvad mode, 0 (lax) to 3 (strict).")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Silero speech probability.")
    frame_ms: Literal[10, 20, 30] = Field(20, description="webrtcvad frame: 10, 20 or 30 ms.")
    prefix_padding_ms: int = Field(
        300, ge=0, le=5000, description="Audio kept before the first voiced frame."
    )
    silence_duration_ms: int = Field(
        500, ge=0, le=10000, description="Silence (hangover) that ends speech."
    )
    min_speech_ms: int = Field(
        250, ge=0, le=10000, description="Voiced audio needed before speech counts."
    )
    max_utterance_s: float = Field(
        30.0, gt=0.0, le=600.0, description="Longer speech is cut here; the rest follows."
    )
    quiet_db: float | None = Field(
        35.0,
        gt=0.0,
        le=120.0,
        description="During speech, 60 ms or more this many dB below the loudest frame of the "
        "utterance count as silence even where the classifier still hears speech (webrtcvad "
        "holds ~100 ms of speech after it ends): the end of speech, the preemptive "
        "start and the hangover begin there. None: the classifier alone decides (as in "
        "listen while its echo canceller runs: it turns the user's voice down).",
    )
    eager_silence_ms: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="Eager end of turn: end speech after this much silence, instead of "
        "silence_duration_ms, once the preemptive reply (dialogue.preemptive) has begun a "
        "tool call, a sign that the command was complete; None: always wait "
        "silence_duration_ms. Speech after an eager end is a new turn (barge-in).",
    )


DEFAULT_YES_WORDS: tuple[str, ...] = (
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "ok",
    "okay",
    "confirm",
    "confirmed",
    "correct",
    "affirmative",
    "go ahead",
    "do it",
    "please do",
)
"""Words and phrases that confirm a ``confirm`` tool (``dialogue.confirm_yes_words``)."""

TOOL_ROUND_LIMIT_MESSAGE = "Sorry, I could not finish that: it took too many steps."


class DialogueSettings(_Group):
    """How a conversation behaves; every field has a working default."""

    instructions: str | None = Field(
        None,
        description="Persona / instruction text. From tokenizer v13 it is a system prompt; "
        "below v13, where mistral-common refuses a system prompt next to audio, the model "
        "worker moves it into the first user message as a text chunk.",
    )
    max_tool_rounds: int = Field(
        4,
        ge=0,
        description="Tool rounds per turn; a reply that still calls tools after that many is "
        "not run, and the user hears tool_round_limit_message.",
    )
    interrupt_response: bool = Field(
        True, description="Barge-in: user speech during a reply cancels it."
    )
    min_interrupt_speech_ms: int = Field(
        500,
        ge=0,
        description="Voiced speech needed to interrupt a reply; shorter speech over a reply (a "
        'cough, "mm-hm", a burst of its own echo) neither interrupts it nor is a turn (listen).',
    )
    transcribe_user: bool = Field(
        True, description="Also run each user clip through transcription mode."
    )
    preemptive: bool = Field(
        True,
        description="Preemptive turns: start the reply at the first silent frame after speech "
        "(during the VAD hangover), show it only once the end of speech is confirmed, and "
        "start over if the user speaks on.",
    )
    transcription_language: str | None = Field(
        None,
        description='ISO-639-1 code ("en", "fr") the user transcripts are made in; None: the '
        "model detects it.",
    )
    context_budget_tokens: int | None = Field(
        None,
        ge=1,
        description="Most prompt tokens per request; None: the model's context minus "
        "max_new_tokens.",
    )

    @field_validator("transcription_language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else iso_639_1(value)

    keep_dropped_transcripts: bool = Field(
        True,
        description="Over the budget, replace old clips by their transcripts before dropping "
        "whole turns.",
    )
    client_tool_timeout_s: float = Field(
        60.0, gt=0, description="How long a client tool may take before its call times out."
    )
    confirm_yes_words: tuple[str, ...] = Field(
        DEFAULT_YES_WORDS,
        description="Words and phrases that confirm a confirm tool (comma-separated in the "
        "environment).",
    )
    session_log_path: Path | None = Field(None, description="Append every turn to this JSONL file.")
    log_audio: bool = Field(False, description="Save user clips as WAV files next to the log.")
    tool_round_limit_message: str = Field(
        TOOL_ROUND_LIMIT_MESSAGE,
        description="What the user hears when the tool-round limit stops a turn.",
    )

    @field_validator("confirm_yes_words", mode="before")
    @classmethod
    def _comma_separated_words(cls, value: Any) -> Any:
        return _split_commas(value)


class ServerSettings(_Group):
    """The network edge: where it listens, who may connect, and every bound on clients."""

    host: str = Field(
        "127.0.0.1", description="Bind address; anything but loopback needs server.token."
    )
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    token: SecretStr | None = Field(
        None, description="Bearer token; required when binding to a non-loopback address."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser Origins allowed besides the server's own page."
    )
    max_sessions: int = Field(
        16, ge=1, description="Concurrent /v1/realtime connections; more are closed with 1013."
    )
    max_message_bytes: int = Field(
        4 * MIB, ge=1, description="Largest WebSocket message; larger closes with 1009."
    )
    max_incoming_messages: int = Field(
        16,
        ge=1,
        description="Messages websockets buffers before it stops reading the socket "
        "(back-pressure); with max_message_bytes this bounds a connection's unread input.",
    )
    max_buffered_audio_s: float = Field(
        300.0, gt=0, description="Uncommitted input audio per connection (manual turns)."
    )
    max_unanswered_audio_s: float = Field(
        300.0, gt=0, description="Committed audio that may wait for a response, per connection."
    )
    max_unanswered_text_chars: int = Field(
        100_000, ge=1, description="Typed text that may wait for a response, per connection."
    )
    send_queue_max_bytes: int = Field(
        8 * MIB,
        ge=1,
        description="Outgoing events waiting for a slow client; beyond this it is disconnected.",
    )
    idle_timeout_s: float = Field(
        600.0, gt=0, description="Close a connection with no message and no response this long."
    )
    max_request_body_bytes: int = Field(
        25 * MIB, ge=1, description="Largest POST body (/v1/respond, the OpenAI-compatible API)."
    )
    max_body_bytes_in_flight: int = Field(
        100 * MIB,
        ge=1,
        description="All POST bodies being received at once; more get 503 (one always fits).",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, description="Deadline for a request head (and POST body) to arrive."
    )
    respond_timeout_s: float = Field(
        300.0, gt=0, description="Longest POST /v1/respond turn or OpenAI API completion."
    )
    ping_interval_s: float = Field(20.0, gt=0, description="WebSocket keep-alive pings.")
    ping_timeout_s: float = Field(20.0, gt=0, description="A ping unanswered this long closes.")
    close_timeout_s: float = Field(
        5.0, gt=0, description="How long a closing handshake (or a final flush) may take."
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="On shutdown, running responses get this long to finish."
    )
    cancel_wait_s: float = Field(
        5.0,
        gt=0,
        description="A cancelled response ends (response.done) within this, even while a "
        "server tool it started runs on.",
    )
    audio_lead_s: float = Field(
        10.0,
        ge=1.0,
        le=600.0,
        description="Spoken replies: audio is synthesized and sent at most this far ahead of "
        "real-time playback (bounds each session's synthesis and its queued events).",
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _token_for_public_bind(self) -> ServerSettings:
        if self.host not in LOOPBACK_HOSTS and not (self.token and self.token.get_secret_value()):
            raise ValueError(
                f"binding to {self.host!r} (not loopback) requires an auth token: "
                "pass --token or set VOXTRAL_ASSISTANT_SERVER__TOKEN"
            )
        return self

    @property
    def token_value(self) -> str | None:
        """The token in clear (for the auth check only; never log it)."""
        return self.token.get_secret_value() if self.token else None


DEFAULT_LANGUAGE_VOICES: dict[str, str] = {
    "en": "en-us",
    "fr": "fr-fr",
    "es": "es",
    "de": "de",
    "it": "it",
    "pt": "pt",
    "nl": "nl",
    "hi": "hi",
}
"""espeak-ng voices for Voxtral's languages (``speech.language_voices``)."""


class SpeechSettings(_Group):
    """Spoken replies: ``listen``'s voice, ``serve``'s audio output, Wyoming's text-to-speech."""

    engine: str = Field(
        "espeak-ng",
        description="Speech synthesizer: espeak-ng (offline), or one an installed package offers "
        "(entry-point group voxtral_assistant.speech_engines).",
    )
    voice: str | None = Field(
        None,
        description="One voice for every reply (espeak-ng --voices lists them); None: the voice "
        "follows the language of what is said (speech.language_voices).",
    )
    language_voices: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_LANGUAGE_VOICES),
        description="The voice of each language (ISO-639-1 code: voice) when speech.voice is "
        "None; entries given replace those of their language (in the environment: "
        "fr:fr-be,pt:pt-br).",
    )
    default_language: str = Field(
        "en",
        description="Spoken until the language of a reply is clear (and by a fixed default "
        "voice); one of speech.language_voices.",
    )
    words_per_minute: int = Field(175, ge=80, le=450, description="Speech rate.")

    @field_validator("language_voices", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = [item.partition(":") for item in _split_commas(value)]
            if not all(sep for _, sep, _ in pairs):
                raise ValueError("expected language:voice pairs, e.g. fr:fr-be,pt:pt-br")
            value = {language.strip(): voice.strip() for language, _, voice in pairs}
        if isinstance(value, dict):
            return {**DEFAULT_LANGUAGE_VOICES, **value}
        return value

    @field_validator("language_voices")
    @classmethod
    def _language_codes(cls, value: dict[str, str]) -> dict[str, str]:
        for language, voice in value.items():
            if not re.fullmatch(r"[a-z]{2}", language):
                raise ValueError(f"{language!r} is not an ISO-639-1 code (two small letters)")
            if not voice.strip():
                raise ValueError(f"the voice for {language!r} is empty")
        return value

    @model_validator(mode="after")
    def _default_language_has_a_voice(self) -> SpeechSettings:
        if self.default_language not in self.language_voices:
            raise ValueError(
                f"default_language {self.default_language!r} has no voice in language_voices "
                f"({', '.join(self.language_voices)})"
            )
        return self

    @property
    def default_voice(self) -> str:
        """``voice``, or else the voice of ``default_language``."""
        return self.voice or self.language_voices[self.default_language]


class ListenSettings(_Group):
    """The desktop voice agent (``listen``)."""

    input_device: int | str | None = Field(
        None, description="Microphone: index, name or part of a name; None: the default input."
    )
    output_device: int | str | None = Field(
        None, description="Speaker for spoken replies; None: the default output."
    )
    speak: bool = Field(True, description="Say the replies aloud.")
    echo_cancellation: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Remove the assistant's own voice from the microphone (WebRTC AEC3), so "
        "that speech can interrupt a reply on open speakers: auto runs it whenever replies "
        "are spoken into a microphone and falls back to half-duplex where it cannot load; on "
        "refuses to start without it; off: half-duplex (or barge_in for headphones).",
    )
    barge_in: bool | None = Field(
        None,
        description="Let speech interrupt the reply; None: on exactly when echo cancellation "
        "runs. True without echo cancellation is for headphones only.",
    )
    echo_tail_ms: int = Field(
        400,
        ge=0,
        le=5000,
        description="Half-duplex: keep ignoring the microphone this long after speaking (room "
        "echo and the output buffer outlast the last sample).",
    )
    wake_word: Literal["okay_nabu", "alexa", "hey_mycroft", "hey_jarvis"] | None = Field(
        None,
        description="Answer only after this wake word (pymicro-wakeword's bundled models; "
        "not on macOS); None: every utterance is a request.",
    )
    follow_up_s: float = Field(
        5.0,
        ge=1.0,
        le=120.0,
        description="After the wake word and after each reply, listen this long for a request "
        "or a follow-up before waiting for the wake word again.",
    )
    chime: bool = Field(
        False, description="Play a short tone when the wake word is heard (needs a speaker)."
    )


VOXTRAL_LANGUAGES = ("en", "es", "fr", "pt", "hi", "de", "nl", "it")
"""The languages Voxtral's model card names (transcription and understanding)."""


class WyomingSettings(_Group):
    """The Wyoming server Home Assistant talks to (speech-to-text, conversation, text-to-speech)."""

    uri: str = Field(
        "tcp://127.0.0.1:10300", description="tcp://HOST:PORT, unix://PATH or stdio://."
    )
    allow_remote: bool = Field(
        False,
        description="Allow a non-loopback address: Wyoming has no authentication at all.",
    )
    zeroconf: bool = Field(False, description="Announce the server on the LAN (_wyoming._tcp).")
    zeroconf_name: str | None = Field(None, description="The announced name (default: host).")
    detect_end_of_speech: bool = Field(
        True,
        description="Find the end of a spoken command with the VAD and answer at once "
        "(Home Assistant then runs no VAD of its own); false: wait for audio-stop.",
    )
    silence_duration_ms: int = Field(
        700, ge=100, le=10000, description="Silence that ends a command (Home Assistant's 0.7 s)."
    )
    no_speech_timeout_s: float = Field(
        8.0, gt=0, le=120, description="Audio without speech after which the answer is empty."
    )
    max_command_s: float = Field(
        15.0, gt=1, le=120, description="A longer command is cut there and transcribed."
    )
    languages: list[str] = Field(
        default_factory=lambda: list(VOXTRAL_LANGUAGES),
        description="Languages advertised for speech-to-text and the conversation agent.",
    )
    voices: list[str] = Field(
        default_factory=list,
        description="espeak-ng voices advertised for text-to-speech, the first the default "
        "(none: speech.voice, else the voice of speech.default_language); they speak at "
        "speech.words_per_minute.",
    )
    max_conversations: int = Field(64, ge=1, description="Conversations remembered at once.")
    conversation_idle_s: float = Field(
        300.0, gt=0, description="A conversation unused this long is forgotten."
    )
    max_text_chars: int = Field(
        100_000, ge=100, description="Longest text per conversation turn or speech request."
    )
    max_connections: int = Field(32, ge=1, description="Clients served at once; more wait.")
    idle_timeout_s: float = Field(
        120.0, gt=0, description="A client that sends nothing (and waits for nothing) is closed."
    )

    @field_validator("languages", "voices", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _uri_and_exposure(self) -> WyomingSettings:
        parsed = urlsplit(self.uri)
        if parsed.scheme not in ("tcp", "unix", "stdio"):
            raise ValueError("uri must be tcp://HOST:PORT, unix://PATH or stdio://")
        if parsed.scheme == "unix" and not parsed.path:
            raise ValueError("a unix:// uri needs a socket path, e.g. unix:///run/voxtral.sock")
        if parsed.scheme != "tcp":
            if self.zeroconf:
                raise ValueError("zeroconf announces a TCP server: use a tcp:// uri")
            return self
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise ValueError("a tcp:// uri needs a host and a port, e.g. tcp://127.0.0.1:10300")
        if parsed.hostname not in LOOPBACK_HOSTS and not self.allow_remote:
            raise ValueError(
                f"binding to {parsed.hostname!r} (not loopback) lets anyone on the network use "
                "the assistant and its tools: Wyoming has no authentication; pass --allow-remote "
                "(VOXTRAL_ASSISTANT_WYOMING__ALLOW_REMOTE=true) to do it anyway"
            )
        if self.zeroconf and parsed.hostname in LOOPBACK_HOSTS:
            raise ValueError(
                "zeroconf would announce a loopback address nobody else can reach; bind to the "
                "LAN address (tcp://0.0.0.0:10300 with --allow-remote)"
            )
        return self


class TranscriptionSettings(_Group):
    """Long recordings: cut at pauses into pieces, transcribed in batches (``transcribe``,
    ``POST /v1/audio/transcriptions``)."""

    max_piece_s: float = Field(
        30.0,
        ge=1.0,
        le=30.0,
        description="Longest piece; 30 s is one encoder window (375 audio tokens), the most "
        "one piece can hold. Shorter pieces give finer timestamps at more cost.",
    )
    batch_pieces: int = Field(
        8, ge=1, le=256, description="Pieces sent to the model together (one batched step)."
    )
    max_new_tokens: int = Field(
        1024, ge=1, le=8192, description="Token limit per piece; a piece that reaches it is marked."
    )
    silence_duration_ms: int = Field(
        300, ge=0, le=10000, description="A pause at least this long is a place to cut."
    )
    timeout_s: float = Field(
        3600.0, gt=0.0, description="Longest POST /v1/audio/transcriptions request."
    )


class Settings(_Group):
    """All settings of the assistant; build it with ``load_settings``."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    vad: VadSettings = Field(default_factory=VadSettings)
    dialogue: DialogueSettings = Field(default_factory=DialogueSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    listen: ListenSettings = Field(default_factory=ListenSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)
    transcription: TranscriptionSettings = Field(default_factory=TranscriptionSettings)
    tools_file: Path | None = Field(
        None,
        description="tools.yaml to load; None: ./tools.yaml when present, else the built-in tools.",
    )


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_layer() -> dict[str, Any]:
    """The environment as a nested dict, so it can sit between the file and the flags."""
    layer: dict[str, Any] = {}
    for name, value in os.environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another one")
        node[parts[-1]] = value
    return layer


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``--set`` values (``server.idle_timeout_s=900``) as nested overrides.

    The value is read as a YAML scalar or flow collection (``900``, ``true``, ``null``,
    ``[a, b]``), exactly as it would be written in the config file.
    """
    layer: dict[str, Any] = {}
    for item in items:
        path, sep, raw = item.partition("=")
        parts = path.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ConfigError(f"--set {item!r}: expected SETTING=VALUE, e.g. vad.frame_ms=30")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {path}: the value is not valid YAML") from None
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part.strip(), {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {path}: conflicts with another --set")
        node[parts[-1].strip()] = value
    return layer


def load_settings(
    overrides: dict[str, Any] | None = None, config_file: Path | None = None
) -> Settings:
    """Build settings from all layers; raise ``ConfigError`` with one line per bad value."""
    if config_file is None and os.environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(os.environ[ENV_PREFIX + "CONFIG"])
    layers: dict[str, Any] = _read_config_file(config_file) if config_file else {}
    layers = _merge(layers, _env_layer())
    layers = _merge(layers, overrides or {})
    try:
        return Settings.model_validate(layers)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            # Never echo a rejected value: it may be a secret.
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        source = f" (config file {config_file})" if config_file else ""
        if len(lines) == 1:
            raise ConfigError(f"invalid setting{source}: {lines[0]}") from None
        raise ConfigError("invalid settings" + source + ":\n  " + "\n  ".join(lines)) from None
