"""Package, CLI, settings and model-resolution behaviour of the foundation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant import __version__
from assistant.cli import build_parser, main
from assistant.cli.common import settings_from_args
from assistant.config import ConfigError, Settings, load_settings
from assistant.model.checkpoint import ModelNotFoundError, resolve_checkpoint


def _subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._subparsers._group_actions]  # type: ignore[union-attr]
    return sorted(name for a in actions for name in a.choices)


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each subcommand answers --help with a usage line."""
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"voxtral-assistant {command}" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli() -> None:
    """`python -m assistant --version` works like the console script."""
    out = subprocess.run(
        [sys.executable, "-m", "assistant", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout


def test_offline_hub_id_fails_at_once_with_advice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An uncached hub id under HF_HUB_OFFLINE=1 fails in well under a second with advice."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_checkpoint("mistralai/Voxtral-Mini-3B-2507")
    assert time.monotonic() - started < 5
    message = str(exc.value)
    assert "hf download mistralai/Voxtral-Mini-3B-2507" in message
    assert "--model" in message
    assert "\n" not in message


def test_local_folder_resolves_to_itself(tiny_model_dir: Path) -> None:
    """A local checkpoint folder is used as is."""
    assert resolve_checkpoint(tiny_model_dir) == tiny_model_dir


def test_folder_without_checkpoint_is_refused(tmp_path: Path) -> None:
    """A folder with no config.json is named in the error."""
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        resolve_checkpoint(tmp_path)


def test_settings_layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Flags beat environment, environment beats the config file, the file beats defaults."""
    config = tmp_path / "c.yaml"
    config.write_text("vad:\n  silence_duration_ms: 700\n  min_speech_ms: 100\nmodel:\n  id: x/y\n")
    monkeypatch.setenv("VOXTRAL_ASSISTANT_VAD__SILENCE_DURATION_MS", "800")
    settings = load_settings({"model": {"id": "/flag"}}, config_file=config)
    assert settings.vad.silence_duration_ms == 800
    assert settings.vad.min_speech_ms == 100
    assert settings.model.id == "/flag"
    assert settings.vad.prefix_padding_ms == 300


def test_invalid_setting_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value names the setting; the CLI turns it into exit status 2."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_VAD__AGGRESSIVENESS", "7")
    with pytest.raises(ConfigError, match=r"vad\.aggressiveness"):
        load_settings()


def test_public_bind_requires_a_token() -> None:
    """Binding beyond loopback without a token is refused; with one it is accepted."""
    with pytest.raises(ConfigError, match="requires an auth token"):
        load_settings({"server": {"host": "0.0.0.0"}})
    settings = load_settings({"server": {"host": "0.0.0.0", "token": "s3cret"}})
    assert settings.server.token is not None
    assert "s3cret" not in repr(settings)


def test_allowed_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A comma-separated environment variable becomes the list of allowed Origins."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_SERVER__ALLOWED_ORIGINS", "https://a.example, https://b")
    assert load_settings().server.allowed_origins == ["https://a.example", "https://b"]


def test_bad_config_file_is_named(tmp_path: Path) -> None:
    """Broken YAML in the config file names the file."""
    config = tmp_path / "bad.yaml"
    config.write_text("vad: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_settings(config_file=config)


def test_unknown_setting_is_rejected(tmp_path: Path) -> None:
    """A typo in the config file is an error, not silently ignored."""
    config = tmp_path / "typo.yaml"
    config.write_text("vad:\n  silense_duration_ms: 700\n")
    with pytest.raises(ConfigError, match="silense_duration_ms"):
        load_settings(config_file=config)


def test_no_network_env_in_tests() -> None:
    """The test suite runs with the hub offline."""
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def _serve_settings(*flags: str, config: Path | None = None) -> Settings:
    """The settings ``voxtral-assistant [--config C] serve FLAGS`` would run with (no bind)."""
    top = ["--config", str(config)] if config else []
    return settings_from_args(build_parser().parse_args([*top, "serve", *flags]))


def test_serve_token_flag_covers_a_host_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve --token satisfies the token rule for a public host set in the environment."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_SERVER__HOST", "0.0.0.0")
    settings = _serve_settings("--token", "abcdefgh")
    assert settings.server.host == "0.0.0.0"
    assert settings.server.token is not None
    assert settings.server.token.get_secret_value() == "abcdefgh"
    with pytest.raises(ConfigError, match="requires an auth token"):
        _serve_settings()


def test_serve_token_flag_covers_a_host_from_the_config_file(tmp_path: Path) -> None:
    """serve --token satisfies the token rule for a public host set in the config file."""
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  host: 0.0.0.0\n  port: 9001\n")
    settings = _serve_settings("--token", "abcdefgh", config=config)
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9001)
    with pytest.raises(ConfigError, match="requires an auth token"):
        _serve_settings(config=config)


def test_serve_flags_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve --port and --allowed-origin override the environment's values."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_SERVER__PORT", "9000")
    monkeypatch.setenv("VOXTRAL_ASSISTANT_SERVER__ALLOWED_ORIGINS", "https://env.example")
    settings = _serve_settings("--port", "9100", "--allowed-origin", "https://flag.example")
    assert settings.server.port == 9100
    assert settings.server.allowed_origins == ["https://flag.example"]
