"""Settings: defaults < config file < ``VOXTRAL_ASSISTANT_*`` environment variables < CLI flags.

Nested groups use a double underscore in the environment, e.g.
``VOXTRAL_ASSISTANT_VAD__SILENCE_DURATION_MS=700`` or ``VOXTRAL_ASSISTANT_SERVER__PORT=9000``.
The config file is YAML with the same structure (``vad: {silence_duration_ms: 700}``); it is
read from ``--config FILE`` or ``VOXTRAL_ASSISTANT_CONFIG``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_MODEL = "mistralai/Voxtral-Mini-3B-2507"
ENV_PREFIX = "VOXTRAL_ASSISTANT_"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(Exception):
    """Settings are invalid; the message says which value and why, in one sentence each."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Group):
    """Which checkpoint to run and where."""

    id: str = Field(DEFAULT_MODEL, description="Hugging Face hub id or local folder.")
    device: str = Field("auto", description="'auto' (CUDA if present), 'cpu', 'cuda', 'cuda:1'.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="'auto' is bfloat16 on GPU and float32 on CPU."
    )
    max_new_tokens: int = Field(512, ge=1, le=32768)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    prefix_reuse: bool = Field(
        True, description="Keep each conversation's KV cache; prefill only the new part of a turn."
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

    @model_validator(mode="after")
    def _compile_needs_static_cache(self) -> ModelSettings:
        if self.compile_backend and self.static_cache_tokens is None:
            raise ValueError(
                "compile_backend needs static_cache_tokens (compiled decode is static)"
            )
        return self


class VadSettings(_Group):
    """Turn detection; defaults follow OpenAI's server_vad (300 ms padding, 500 ms silence)."""

    backend: Literal["webrtc", "silero"] = "webrtc"
    aggressiveness: int = Field(3, ge=0, le=3, description="webrtcvad mode, 0 (lax) to 3 (strict).")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Silero speech probability.")
    frame_ms: Literal[10, 20, 30] = 20
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=0, le=10000)
    min_speech_ms: int = Field(250, ge=0, le=10000)
    max_utterance_s: float = Field(30.0, gt=0.0, le=600.0)


class ServerSettings(_Group):
    """The network edge."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: SecretStr | None = Field(
        None, description="Bearer token; required when binding to a non-loopback address."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser Origins allowed besides the server's own page."
    )
    max_sessions: int = Field(16, ge=1)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # From the environment the list arrives as one string: "https://a,https://b".
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _token_for_public_bind(self) -> ServerSettings:
        if self.host not in LOOPBACK_HOSTS and not (self.token and self.token.get_secret_value()):
            raise ValueError(
                f"binding to {self.host!r} (not loopback) requires an auth token: "
                "pass --token or set VOXTRAL_ASSISTANT_SERVER__TOKEN"
            )
        return self


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
        default_factory=lambda: ["en-us"],
        description="espeak-ng voices advertised for text-to-speech; the first is the default.",
    )
    words_per_minute: int = Field(175, ge=80, le=450, description="Speaking rate.")
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
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("voices")
    @classmethod
    def _some_voice(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one voice (espeak-ng --voices lists them)")
        return value

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


class Settings(_Group):
    """All settings of the assistant; build it with ``load_settings``."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    vad: VadSettings = Field(default_factory=VadSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)
    tools_file: Path | None = Field(None, description="tools.yaml to load.")
    instructions: str | None = Field(None, description="Persona / instruction text.")


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
            lines.append(f"{where}: {err['msg']}")
        source = f" (config file {config_file})" if config_file else ""
        raise ConfigError("invalid settings" + source + ":\n  " + "\n  ".join(lines)) from None
