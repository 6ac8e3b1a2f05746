"""``listen`` end to end on virtual sound devices: a spoken command in, a spoken reply out.

The virtual microphone hears everything played into the virtual speaker, the assistant's own
voice included: exactly the echo that half-duplex must keep from starting a new turn.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assistant.speech.synthesis import EspeakSynthesizer
from tests.agent.cli import ListenProcess
from tests.agent.conftest import REPLY_SENTENCES, ScriptWriter
from tests.agent.sound import read_pcm, sounding_s
from tests.support.pulse import VirtualAudio

AFTER_REPLY_S = 1.0
"""How long the end of the reply's echo is given to (wrongly) start a turn: ample, as the VAD
reports speech after 250 ms of it."""


def test_a_spoken_command_runs_the_tool_and_the_reply_is_spoken_without_echo(
    virtual_audio: VirtualAudio,
    tiny_model_dir: Path,
    command_wav: Path,
    tools_file: Path,
    forced_replies: ScriptWriter,
    tmp_path: Path,
) -> None:
    """Half-duplex: the tool runs, the reply is heard on the speaker, and its echo starts no
    new turn."""
    listen = ListenProcess(
        "--model", tiny_model_dir, "--tools", tools_file, "--forced-replies", forced_replies(),
        "--echo-cancellation", "off",
        env={"PULSE_SERVER": virtual_audio.server},
    )  # fmt: skip
    try:
        listen.wait_for(lambda e: e.get("state") == "listening", timeout_s=60)
        command_heard_s = sounding_s(*read_pcm(command_wav))
        recording = virtual_audio.record(tmp_path / "speaker.wav")
        virtual_audio.play(command_wav)
        listen.wait_for(lambda e: e["type"] == "turn_done", timeout_s=60)
        listen.wait_for(lambda e: e["type"] == "agent_status" and e["state"] == "speaking")
        spoken_at = listen.wait_for(
            lambda e: e["type"] == "spoken_sentence" and e["text"] == REPLY_SENTENCES[-1]
        )["at_s"]
        listen.wait_for(lambda e: e.get("state") == "listening" and e["at_s"] >= spoken_at)
        time.sleep(AFTER_REPLY_S)
        recorded = recording.stop()
        assert listen.interrupt() == 0
    finally:
        listen.kill()
    events = listen.events
    (result,) = [e for e in events if e["type"] == "tool_result"]
    assert result["name"] == "get_time" and result["ok"]
    spoken = [e for e in events if e["type"] == "spoken_sentence"]
    assert [s["text"] for s in spoken] == list(REPLY_SENTENCES)
    assert not any(s["interrupted"] for s in spoken)
    # The speaker played the command and then the reply: the reply's share matches its length.
    synthesizer = EspeakSynthesizer()
    reply_s = sum(
        sounding_s(synthesizer.synthesize(s), synthesizer.sample_rate_hz) for s in REPLY_SENTENCES
    )
    reply_heard_s = sounding_s(*read_pcm(recorded)) - command_heard_s
    assert reply_heard_s == pytest.approx(reply_s, rel=0.25, abs=0.2)
    # Half-duplex: the microphone heard the reply too, yet only the command started a turn.
    assert len([e for e in events if e["type"] == "speech_started"]) == 1
    assert len([e for e in events if e["type"] == "utterance"]) == 1
    assert len([e for e in events if e["type"] == "turn_done"]) == 1


def test_without_half_duplex_the_reply_echo_interrupts_it(
    virtual_audio: VirtualAudio,
    tiny_model_dir: Path,
    command_wav: Path,
    forced_replies: ScriptWriter,
) -> None:
    """The reason barge-in needs headphones: on a loudspeaker the assistant hears itself."""
    script = forced_replies(
        transcripts=["What time is it?", "It is"],
        replies=[{"text": " ".join(REPLY_SENTENCES)}, {"text": "Yes?"}],
    )
    listen = ListenProcess(
        "--model", tiny_model_dir, "--forced-replies", script, "--barge-in",
        "--echo-cancellation", "off",
        env={"PULSE_SERVER": virtual_audio.server},
    )  # fmt: skip
    try:
        listen.wait_for(lambda e: e.get("state") == "listening", timeout_s=60)
        virtual_audio.play(command_wav)
        interrupted = listen.wait_for(lambda e: e["type"] == "spoken_sentence", timeout_s=60)
        listen.wait_for(lambda e: e["type"] == "turn_done" and e["text"] == "Yes?")
        assert listen.interrupt() == 0
    finally:
        listen.kill()
    assert interrupted["text"] == REPLY_SENTENCES[0] and interrupted["interrupted"]
    assert len([e for e in listen.events if e["type"] == "utterance"]) == 2
