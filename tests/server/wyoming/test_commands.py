"""When a spoken command is complete, and what audio it holds (the listener alone, no I/O)."""

from __future__ import annotations

import numpy as np

from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.server.wyoming.asr import CommandListener, command_vad_settings
from assistant.testing.speech import synthesize

SPEECH = synthesize("Turn on the kitchen light.")


def listener(silence_ms: int = 700, max_command_s: float = 15.0, **kw: float) -> CommandListener:
    vad = command_vad_settings(VadSettings(), silence_ms, max_command_s, None)
    return CommandListener(
        VadSegmenter(vad),
        max_command_s=max_command_s,
        no_speech_timeout_s=kw.get("no_speech_timeout_s", 8.0),
    )


def feed_all(command_listener: CommandListener, pcm: np.ndarray, step: int = 1024) -> int:
    """Feed in chunks; the number of samples fed when the command completed (or all)."""
    for offset in range(0, len(pcm), step):
        if command_listener.feed(pcm[offset : offset + step]) is not None:
            return offset + step
    return len(pcm)


def test_the_command_ends_after_the_silence_and_holds_just_the_speech() -> None:
    """Complete after ~0.7 s of silence; its audio is the speech, not the silence around it."""
    lead, tail = np.zeros(8000, np.int16), np.zeros(16000 * 5, np.int16)
    heard = listener()
    fed = feed_all(heard, np.concatenate([lead, SPEECH, tail]))
    command = heard.command
    assert command is not None and command.reason == "end_of_speech"
    assert command.audio is not None
    assert len(SPEECH) * 0.7 < len(command.audio) < len(SPEECH) + 16000 * 0.5
    after_speech_s = (fed - len(lead) - len(SPEECH)) / 16000
    assert 0.3 < after_speech_s < 1.5  # espeak-ng ends its clip with a little silence


def test_a_relaxed_client_gets_a_longer_silence() -> None:
    """vad_sensitivity 'relaxed' waits Home Assistant's 1.25 s; 'aggressive' 0.25 s."""
    assert command_vad_settings(VadSettings(), 700, 15, "relaxed").silence_duration_ms == 1250
    assert command_vad_settings(VadSettings(), 700, 15, "aggressive").silence_duration_ms == 250
    assert command_vad_settings(VadSettings(), 700, 15, "default").silence_duration_ms == 700


def test_a_command_longer_than_the_limit_is_cut() -> None:
    """Speech going on past max_command_s completes the command there."""
    babble = np.concatenate([SPEECH] * 4)
    heard = listener(max_command_s=3.0)
    feed_all(heard, babble)
    assert heard.command is not None and heard.command.reason == "max_length"
    assert heard.command.audio is not None and len(heard.command.audio) <= 3 * 16000


def test_silence_completes_an_empty_command() -> None:
    """No speech for no_speech_timeout_s: a command without audio."""
    heard = listener(no_speech_timeout_s=2.0)
    fed = feed_all(heard, np.zeros(16000 * 4, np.int16))
    assert heard.command is not None and heard.command.reason == "no_speech"
    assert heard.command.audio is None and fed <= 16000 * 2 + 1024


def test_audio_stop_mid_speech_gives_what_was_said() -> None:
    """audio-stop while speech goes on: the speech so far is the command."""
    heard = listener()
    feed_all(heard, SPEECH)
    command = heard.stop()
    assert command.reason == "audio_stop" and command.audio is not None


def test_without_a_vad_the_command_is_all_the_audio() -> None:
    """No end-of-speech detection: nothing completes early; audio-stop gives everything."""
    heard = CommandListener(None, max_command_s=15.0, no_speech_timeout_s=8.0)
    stream = np.concatenate([SPEECH, np.zeros(16000 * 3, np.int16)])
    assert feed_all(heard, stream) == len(stream) and heard.command is None
    command = heard.stop()
    assert command.audio is not None and len(command.audio) == len(stream)


def test_audio_after_the_command_is_ignored() -> None:
    """Once complete, the command does not change whatever follows."""
    heard = listener()
    feed_all(heard, np.concatenate([SPEECH, np.zeros(16000 * 2, np.int16)]))
    first = heard.command
    assert heard.feed(SPEECH) is None and heard.stop() is first
