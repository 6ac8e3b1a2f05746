"""The wyoming.* settings and the LAN announcement record."""

from __future__ import annotations

import socket

import pytest

from assistant.config import ConfigError, load_settings
from assistant.server.wyoming.discovery import SERVICE_TYPE, lan_address, service_info


def test_voices_and_languages_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VOXTRAL_ASSISTANT_WYOMING__VOICES=en-us,fr gives two voices, the first the default."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_WYOMING__VOICES", "en-us, fr")
    monkeypatch.setenv("VOXTRAL_ASSISTANT_WYOMING__LANGUAGES", "en,fr")
    settings = load_settings().wyoming
    assert (settings.voices, settings.languages) == (["en-us", "fr"], ["en", "fr"])


def test_allow_remote_from_the_flags_covers_a_uri_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule sees the final values: an environment uri plus the flag is accepted."""
    monkeypatch.setenv("VOXTRAL_ASSISTANT_WYOMING__URI", "tcp://0.0.0.0:10300")
    with pytest.raises(ConfigError, match="no authentication"):
        load_settings()
    assert load_settings({"wyoming": {"allow_remote": True}}).wyoming.allow_remote


@pytest.mark.parametrize(
    ("wyoming", "message"),
    [
        ({"uri": "http://127.0.0.1:10300"}, "tcp://HOST:PORT"),
        ({"uri": "unix://"}, "socket path"),
        ({"uri": "tcp://127.0.0.1"}, "host and a port"),
        ({"zeroconf": True}, "loopback address nobody else can reach"),
        ({"uri": "stdio://", "zeroconf": True}, "TCP server"),
    ],
)
def test_unusable_settings_are_refused(wyoming: dict[str, object], message: str) -> None:
    """Each unusable combination is one sentence saying what to do."""
    with pytest.raises(ConfigError, match=message):
        load_settings({"wyoming": wyoming})


def test_the_announcement_names_the_service_and_its_address() -> None:
    """The mDNS record: _wyoming._tcp, the chosen name, the bound address and port."""
    info = service_info("kitchen-voxtral", "192.0.2.7", 10300)
    assert info.type == SERVICE_TYPE
    assert info.name == f"kitchen-voxtral.{SERVICE_TYPE}"
    assert info.port == 10300
    assert info.addresses == [socket.inet_aton("192.0.2.7")]


def test_a_specific_bind_address_is_announced_as_it_is() -> None:
    """Only a wildcard bind (0.0.0.0) needs the LAN address looked up."""
    assert lan_address("192.0.2.7") == "192.0.2.7"
