"""One home for every setting: reachable from YAML, the environment, --set and flags; a
consistent command line (global flags anywhere, -q vs -v, --device, default tools)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli import build_parser, main
from assistant.cli.common import setting_default, settings_from_args, verbosity
from assistant.config import ServerSettings, Settings

ROOT = Path(__file__).resolve().parents[1]


def _settings(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("name", sorted(ServerSettings.model_fields))
def test_every_server_setting_is_reachable_from_every_layer(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each server.* setting (limits included) can be set from the file, the environment and
    --set, the later layer winning."""
    if name in ("token", "allowed_origins", "host"):
        pytest.skip("covered by the token / origin tests in test_foundation")
    default = ServerSettings.model_fields[name].get_default(call_default_factory=True)
    file_value, env_value, flag_value = default + 1, default + 2, default + 3
    config = tmp_path / "settings.yaml"
    config.write_text(f"server:\n  {name}: {file_value}\n")
    assert getattr(_settings("--config", str(config), "serve").server, name) == file_value
    monkeypatch.setenv(f"VOXTRAL_ASSISTANT_SERVER__{name.upper()}", str(env_value))
    assert getattr(_settings("--config", str(config), "serve").server, name) == env_value
    chosen = _settings("--config", str(config), "serve", "--set", f"server.{name}={flag_value}")
    assert getattr(chosen.server, name) == flag_value


def test_a_flag_beats_set_and_its_help_shows_the_settings_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--idle-timeout-s wins over --set for the same setting; --help reads defaults from the
    settings, so a default changes in one place."""
    settings = _settings("serve", "--set", "server.idle_timeout_s=5", "--idle-timeout-s", "7")
    assert settings.server.idle_timeout_s == 7
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    default = setting_default("server.idle_timeout_s")
    assert f"close silent connections after this (default: {default})" in help_text


def test_global_flags_work_after_the_subcommand(tmp_path: Path) -> None:
    """--config, --set and -v/-q may follow the subcommand; counts add up across both sides."""
    config = tmp_path / "settings.yaml"
    config.write_text("server:\n  port: 9123\n")
    args = build_parser().parse_args(
        ["-v", "serve", "--config", str(config), "-v", "--set", "vad.frame_ms=30"]
    )
    assert verbosity(args) == 2
    settings = settings_from_args(args)
    assert settings.server.port == 9123 and settings.vad.frame_ms == 30


def test_set_refuses_malformed_assignments(capsys: pytest.CaptureFixture[str]) -> None:
    """A --set without '=' or naming an unknown setting is one line, exit 2, nothing runs."""
    assert main(["serve", "--set", "server.port"]) == 2
    assert "expected SETTING=VALUE" in capsys.readouterr().err
    assert main(["serve", "--set", "server.nonsense=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "server.nonsense" in err


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_an_unknown_device_is_one_line_before_anything_loads(
    device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--device gpu (and friends) is refused in one line naming the choices, no traceback."""
    assert main(["transcribe", "x.wav", "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"unknown device {device!r}" in err and "mps" in err


def test_the_microphone_is_input_device_and_device_is_compute() -> None:
    """In listen, --device is where the model computes, as everywhere; the mic is --input-device."""
    settings = _settings("listen", "--device", "cpu", "--input-device", "3")
    assert settings.model.device == "cpu"
    assert settings.listen.input_device == "3"


def _log_levels(*flags: str) -> tuple[int, int]:
    from assistant.cli import _setup_logging

    args = build_parser().parse_args([*flags, "devices"])
    _setup_logging(verbosity(args))
    return logging.getLogger("assistant").level, logging.getLogger().level


def test_quiet_and_verbose_differ() -> None:
    """-qq: errors; -q: warnings; default: the assistant's INFO; -v: DEBUG everywhere."""
    assert _log_levels("-qq") == (logging.ERROR, logging.ERROR)
    assert _log_levels("-q") == (logging.WARNING, logging.WARNING)
    assert _log_levels() == (logging.INFO, logging.WARNING)
    assert _log_levels("-v") == (logging.DEBUG, logging.DEBUG)


def test_tools_check_without_a_file_uses_the_built_in_tools(tmp_path: Path) -> None:
    """Outside a folder with tools.yaml (and with no tools_file setting), the built-in tools
    and the installed plugins are used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXTRAL_ASSISTANT_")}
    done = subprocess.run(
        [sys.executable, "-m", "assistant", "tools", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert "builtin.yaml" in done.stdout
    for name in ("get_time", "set_timer", "cancel_timer"):
        assert name in done.stdout
    assert "set_light" not in done.stdout


def test_a_local_tools_yaml_is_the_default(tmp_path: Path) -> None:
    """With ./tools.yaml present and no tools_file setting, that file is the default."""
    (tmp_path / "tools.yaml").write_text(
        "version: 1\nplugins: none\ntools:\n"
        "  - handler: {python: 'assistant.tools.builtin:get_time'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXTRAL_ASSISTANT_")}
    done = subprocess.run(
        [sys.executable, "-m", "assistant", "tools", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tools.yaml: 1 tool,")


def test_the_readme_lists_every_setting_with_its_default() -> None:
    """The README's settings table is exactly what `voxtral-assistant settings --markdown`
    prints, so a new setting or a changed default cannot go undocumented."""
    from assistant.cli.settings import markdown_table, setting_rows

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("checks it -->\n") + len("checks it -->\n")
    end = readme.index("\n<!-- end of settings table -->")
    assert readme[start:end] == markdown_table(setting_rows())


def test_settings_current_shows_the_effective_values_and_hides_the_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`settings --current` shows values from every layer, and never the token itself."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_SERVER__TOKEN", "s3cret-value")
    assert main(["settings", "--current", "--set", "vad.frame_ms=30"]) == 0
    out = capsys.readouterr().out
    assert "vad.frame_ms = 30\n" in out
    assert "server.token = (set)\n" in out
    assert "s3cret-value" not in out


def test_the_demo_model_replies_greedily_unless_a_temperature_is_set() -> None:
    """``--model demo`` samples at temperature 0 (its figures are greedy); a temperature set in
    any layer wins; other models keep the chat default of 0.2."""
    from assistant.config import load_settings

    assert load_settings({"model": {"id": "demo"}}).model.generation_params().temperature == 0.0
    chosen = load_settings({"model": {"id": "demo", "temperature": 0.7}})
    assert chosen.model.generation_params().temperature == 0.7
    assert load_settings({}).model.generation_params().temperature == 0.2
