"""MicCapture on a real PortAudio device: PulseAudio's ``pulse`` device on a virtual microphone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.capture import MicCapture, MicError, find_input_device, list_input_devices
from assistant.audio.vad import VadSegmenter, segment
from assistant.events import Utterance
from assistant.testing.speech import write_wav
from tests.support.pulse import VirtualAudio

from .tracks import speech

pytestmark = [
    pytest.mark.system,
    pytest.mark.audio_device,
]  # captures through real PortAudio and PulseAudio

PREFIX_MS = 300


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A WAV holding only speech (no leading or trailing silence), and its duration in s."""
    pcm = speech("Turn on the kitchen lights and close the blinds please")
    path = tmp_path_factory.mktemp("speech") / "command.wav"
    write_wav(str(path), pcm)
    return path, len(pcm) / 16000


async def _capture_while_playing(
    audio: VirtualAudio, wav: Path, mic: MicCapture, lead_s: float = 0.8, tail_s: float = 1.2
) -> list[Utterance]:
    """Segment what the microphone hears while ``wav`` is played into the virtual speaker."""

    async def play_then_stop() -> None:
        await asyncio.sleep(lead_s)
        await asyncio.to_thread(audio.play, wav)
        await asyncio.sleep(tail_s)
        await mic.stop()

    async with mic:
        player = asyncio.create_task(play_then_stop(), name="play-then-stop")
        found = [e async for e in segment(mic, VadSegmenter()) if isinstance(e, Utterance)]
        await player
    return found


async def test_real_capture_segments_exactly_one_utterance_of_the_wav_length(
    virtual_audio: VirtualAudio, spoken_wav: tuple[Path, float]
) -> None:
    """A WAV played into the virtual speaker comes back through PortAudio as one utterance."""
    wav, duration_s = spoken_wav
    mic = MicCapture("pulse")
    found = await _capture_while_playing(virtual_audio, wav, mic)
    assert mic.device is not None and mic.device.name == "pulse"
    assert mic.capture_rate_hz == 16000
    assert len(found) == 1
    assert abs((found[0].duration_s - PREFIX_MS / 1000) - duration_s) <= 0.150
    assert (mic.dropped_frames, mic.overflows) == (0, 0)


async def test_capture_at_another_rate_in_stereo_is_mixed_down_and_resampled(
    virtual_audio: VirtualAudio, spoken_wav: tuple[Path, float]
) -> None:
    """Capturing at 48 kHz stereo still yields 16 kHz mono frames and the same utterance."""
    wav, duration_s = spoken_wav
    mic = MicCapture("pulse", capture_rate_hz=48000, channels=2)
    found = await _capture_while_playing(virtual_audio, wav, mic)
    assert (mic.capture_rate_hz, mic.capture_channels) == (48000, 2)
    assert len(found) == 1
    assert abs((found[0].duration_s - PREFIX_MS / 1000) - duration_s) <= 0.150


async def test_frames_are_16khz_mono_int16_of_frame_ms(virtual_audio: VirtualAudio) -> None:
    """Every frame is a 1-D int16 array of frame_ms at 16 kHz."""
    async with MicCapture("pulse", frame_ms=30) as mic:
        frames = [await mic.__anext__() for _ in range(10)]
    assert {(f.dtype, f.shape) for f in frames} == {(np.dtype(np.int16), (480,))}


async def test_a_stalled_consumer_costs_counted_frames_not_memory(
    virtual_audio: VirtualAudio,
) -> None:
    """Not reading for a second drops the oldest frames: the queue stays at its bound."""
    async with MicCapture("pulse", max_queue_frames=10) as mic:
        await asyncio.sleep(1.0)
        assert mic.queued_frames == 10
        assert mic.dropped_frames >= 30
        first = await mic.__anext__()
    assert first.shape == (320,)


async def test_a_blocked_event_loop_costs_counted_frames_not_memory(
    virtual_audio: VirtualAudio,
) -> None:
    """With the loop blocked, the callback drops blocks itself and nothing piles up."""
    async with MicCapture("pulse", max_queue_frames=10) as mic:
        await mic.__anext__()
        time.sleep(1.0)  # noqa: ASYNC251 - blocking the event loop is what this test is about
        await asyncio.sleep(0)
        assert mic.queued_frames <= 10
        assert mic.dropped_frames >= 30


async def test_iteration_ends_cleanly_after_stop(virtual_audio: VirtualAudio) -> None:
    """After stop() the frames already queued are delivered, then the iterator ends."""
    mic = MicCapture("pulse")
    async with mic:
        await asyncio.sleep(0.3)
    leftovers = [frame async for frame in mic]
    assert len(leftovers) >= 5
    await mic.stop()


async def test_a_vanishing_device_ends_iteration_with_mic_error() -> None:
    """When the sound server behind the device dies, the iterator raises MicError."""
    from assistant.audio.capture import rescan_devices

    audio = VirtualAudio().start()
    try:
        rescan_devices()
        async with MicCapture("pulse") as mic:
            await mic.__anext__()
            audio.stop()
            with pytest.raises(MicError, match="stopped delivering audio"):
                async for _ in mic:
                    pass
    finally:
        audio.stop()
        rescan_devices()


async def test_a_stalled_device_raises_mic_error_instead_of_waiting_forever() -> None:
    """A source that stops delivering without ending the stream (suspended) raises MicError."""
    from assistant.audio.capture import rescan_devices

    audio = VirtualAudio().start()
    try:
        rescan_devices()
        async with MicCapture("pulse", stall_timeout_s=0.5) as mic:
            await mic.__anext__()
            audio.pactl("suspend-source", audio.source_name, "1")
            with pytest.raises(MicError, match=r"stopped delivering audio \(nothing for 0\.5 s"):
                async with asyncio.timeout(10):
                    async for _ in mic:
                        pass
    finally:
        audio.stop()
        rescan_devices()


def test_the_pulse_device_is_listed_with_its_default_rate(virtual_audio: VirtualAudio) -> None:
    """list_input_devices() shows PulseAudio's device, its channels and default rate."""
    pulse = next(d for d in list_input_devices() if d.name == "pulse")
    assert pulse.max_input_channels >= 1
    assert pulse.default_sample_rate_hz > 0


def test_a_device_is_found_by_index_or_name_substring(virtual_audio: VirtualAudio) -> None:
    """An index and a unique case-insensitive name substring name the same device."""
    pulse = find_input_device("PULS")
    assert find_input_device(pulse.index) == pulse


def test_an_unknown_device_name_lists_the_devices(virtual_audio: VirtualAudio) -> None:
    """A name that matches nothing raises MicError listing what exists."""
    with pytest.raises(MicError, match=r"no input device matches 'studio mic'.*'pulse'"):
        find_input_device("studio mic")


async def test_more_channels_than_the_device_has_are_refused(virtual_audio: VirtualAudio) -> None:
    """Asking for 64 channels from a 32-channel device raises MicError saying so."""
    with pytest.raises(MicError, match="at most 32 input channels"):
        await MicCapture("pulse", channels=64).start()


async def test_an_unsupported_rate_is_refused_with_a_clear_error(
    virtual_audio: VirtualAudio,
) -> None:
    """A sample rate the device refuses raises MicError naming the sample rate."""
    with pytest.raises(MicError, match="does not support the requested sample rate"):
        await MicCapture("pulse", capture_rate_hz=1).start()


def test_devices_command_prints_the_input_devices(
    virtual_audio: VirtualAudio, capsys: pytest.CaptureFixture[str]
) -> None:
    """`voxtral-assistant devices` lists each input device with its default rate."""
    from assistant.cli import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "pulse" in out
    assert "Hz" in out


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_machine_without_input_devices_gets_a_clear_error(tmp_path: Path) -> None:
    """With ALSA pointing at a missing card and no sound server, MicError says none exists."""
    alsa = tmp_path / "alsa.conf"
    alsa.write_text("pcm.!default { type hw card 99 }\n")
    done = _run_python(
        "from assistant.audio.capture import MicCapture, MicError\n"
        "import asyncio\n"
        "try:\n"
        "    asyncio.run(MicCapture().start())\n"
        "except MicError as exc:\n"
        "    print(exc)\n",
        ALSA_CONFIG_PATH=str(alsa),
        PULSE_SERVER="unix:/nonexistent/native",
    )
    assert "no input device found" in done.stdout, done.stderr


def test_missing_portaudio_names_the_packages_to_install() -> None:
    """When the PortAudio library cannot be found, MicError names the Debian and brew packages."""
    done = _run_python(
        "import ctypes.util\n"
        "ctypes.util.find_library = lambda name: None  # as on a machine without PortAudio\n"
        "from assistant.audio.capture import MicError, list_input_devices\n"
        "try:\n"
        "    list_input_devices()\n"
        "except MicError as exc:\n"
        "    print(exc)\n"
    )
    assert "apt-get install libportaudio2" in done.stdout, done.stderr
    assert "brew install portaudio" in done.stdout


def test_a_busy_device_is_explained() -> None:
    """PortAudio's 'Device unavailable' (paDeviceUnavailable) becomes a 'busy' MicError."""
    import sounddevice

    from assistant.audio.capture import InputDevice, explain_portaudio_error

    device = InputDevice(3, "USB Mic", "ALSA", 1, 48000, False)
    error = sounddevice.PortAudioError("Error opening InputStream: Device unavailable", -9985)
    message = str(explain_portaudio_error(error, device))
    assert "busy" in message
    assert "'USB Mic'" in message


async def test_a_stopped_capture_cannot_be_restarted(virtual_audio: VirtualAudio) -> None:
    """start() after stop() raises RuntimeError instead of silently yielding nothing."""
    mic = MicCapture("pulse")
    async with mic:
        await mic.__anext__()
    with pytest.raises(RuntimeError, match="starts once"):
        await mic.start()


async def test_reading_before_start_is_an_error() -> None:
    """Iterating a MicCapture that was never started raises instead of waiting forever."""
    with pytest.raises(RuntimeError, match="not running"):
        await asyncio.wait_for(MicCapture().__anext__(), timeout=5)
