"""Closing PortAudio streams is bounded: MicCapture.stop() and Speaker.aclose() return even
when the sound server never lets go of a wedged device."""

from __future__ import annotations

import asyncio
import threading

from assistant.audio import capture
from assistant.audio.capture import MicCapture


class _WedgedStream:
    """A PortAudio stream whose abort() blocks until released, as on a stuck sound server."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def abort(self) -> None:
        self.release.wait(30)

    def close(self) -> None:
        self.closed.set()


async def test_stop_returns_and_iteration_ends_when_abort_hangs(monkeypatch) -> None:
    """A stream stuck in abort() costs CLOSE_TIMEOUT_S, then iteration ends; no thread leaks."""
    monkeypatch.setattr(capture, "CLOSE_TIMEOUT_S", 0.2)
    mic = MicCapture(stall_timeout_s=None)
    stream = _WedgedStream()
    mic._loop = asyncio.get_running_loop()
    mic._stream = stream
    mic._started = True
    await asyncio.wait_for(mic.stop(), 5)
    assert [frame async for frame in mic] == []
    stream.release.set()  # the sound server recovers: the stream is still closed
    assert await asyncio.to_thread(stream.closed.wait, 5)


async def test_stop_waits_for_a_stream_that_closes(monkeypatch) -> None:
    """A stream that aborts normally is closed before stop() returns."""
    mic = MicCapture(stall_timeout_s=None)
    stream = _WedgedStream()
    stream.release.set()
    mic._loop = asyncio.get_running_loop()
    mic._stream = stream
    mic._started = True
    await mic.stop()
    assert stream.closed.is_set()


class _WedgedPlayer:
    """An output kept open whose close() blocks until released, as on a stuck sound server."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def play(self, pcm, sample_rate_hz, stop) -> float:  # never called here
        raise AssertionError("nothing is said in this test")

    def close(self) -> None:
        self.release.wait(30)
        self.closed.set()


async def test_the_speaker_closes_within_its_bound_when_the_output_hangs(monkeypatch) -> None:
    """Speaker.aclose() gives a stuck output CLOSE_TIMEOUT_S, then returns (the process can
    exit); the output still closes when the sound server recovers."""
    from assistant.speech import speaker
    from assistant.speech.synthesis import EspeakSynthesizer

    monkeypatch.setattr(speaker, "CLOSE_TIMEOUT_S", 0.2)
    player = _WedgedPlayer()
    voice = await speaker.Speaker(EspeakSynthesizer(), player).start()  # type: ignore[arg-type]
    await asyncio.wait_for(voice.aclose(), 5)
    assert not player.closed.is_set()
    player.release.set()
    assert await asyncio.to_thread(player.closed.wait, 5)


class _StuckPlayer:
    """A player whose stream, told to stop mid-sentence, never comes back from the sound server
    (PortAudio's abort() on a wedged PulseAudio) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.playing = threading.Event()
        self.returned = threading.Event()

    def play(self, pcm, sample_rate_hz, stop) -> float:
        self.playing.set()
        stop.wait(30)
        self.release.wait(30)  # the abort hangs
        self.returned.set()
        return 0.0


async def _speak_then_close(player: _StuckPlayer) -> None:
    from assistant.speech import speaker
    from assistant.speech.synthesis import EspeakSynthesizer

    voice = await speaker.Speaker(EspeakSynthesizer(), player).start()  # type: ignore[arg-type]
    voice.say("Here is a sentence that will not end.")
    assert await asyncio.to_thread(player.playing.wait, 10)
    await asyncio.wait_for(voice.aclose(), 5)


async def test_the_speaker_closes_within_its_bound_when_playing_hangs(monkeypatch, caplog) -> None:
    """A sentence whose playback cannot stop costs CLOSE_TIMEOUT_S, then aclose() returns and
    says so; the playback thread ends when the sound server recovers."""
    from assistant.speech import speaker

    monkeypatch.setattr(speaker, "CLOSE_TIMEOUT_S", 0.2)
    player = _StuckPlayer()
    await _speak_then_close(player)
    assert not player.returned.is_set()
    assert "the speaker did not stop within 0.2 s" in caplog.text
    player.release.set()
    assert await asyncio.to_thread(player.returned.wait, 5)


def test_a_playback_stuck_in_the_sound_server_does_not_keep_the_program_from_ending(
    monkeypatch,
) -> None:
    """``asyncio.run`` joins the loop's executor threads when it ends; the playback thread is
    not one of them, so a program that closed its speaker ends although the sound server still
    holds the stream (as ``listen`` must on Ctrl-C)."""
    from assistant.speech import speaker

    monkeypatch.setattr(speaker, "CLOSE_TIMEOUT_S", 0.2)
    player = _StuckPlayer()
    program = threading.Thread(target=asyncio.run, args=(_speak_then_close(player),), daemon=True)
    program.start()
    program.join(10)
    try:
        assert not program.is_alive()
        assert not player.returned.is_set()
    finally:
        player.release.set()
    assert player.returned.wait(5)
