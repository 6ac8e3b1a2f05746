"""Fixtures for the audio front-end tests: a virtual PulseAudio microphone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pulse import VirtualAudio


@pytest.fixture(scope="module")
def virtual_audio() -> Iterator[VirtualAudio]:
    """A private PulseAudio server whose default microphone hears its virtual speaker.

    PortAudio is made to enumerate devices again on the way in and out, so that its ``pulse``
    device reaches this server.
    """
    from assistant.audio.capture import rescan_devices

    with VirtualAudio() as audio:
        rescan_devices()
        yield audio
    rescan_devices()
