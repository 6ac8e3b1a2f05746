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
    encoder_batch_windows: int = Field(
        16, ge=1, le=1024, description="Most 30 s audio windows encoded by one encoder call."
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
    server: ServerSettings = Field(default_factory=ServerSettings)
    transcription: TranscriptionSettings = Field(default_factory=TranscriptionSettings)
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
