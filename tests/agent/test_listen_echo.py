"""``listen`` on open (virtual) speakers: the reply's echo reaches the microphone through a room.

The agent plays into the virtual speaker; ``EchoRig`` carries that sound through a simulated
room (40 ms of delay, reverberation, 6 dB of attenuation) into the virtual microphone, where
the user's voice is mixed in. With echo cancellation the agent must never interrupt itself,
and the user must be able to interrupt it.

Echo cancellation is ``listen``'s default (``auto``): the first test runs the agent as a user
would, with no echo option. The control test shows the rig's echo is real.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.testing.speech import synthesize, write_wav
from tests.agent.cli import ListenProcess
from tests.agent.conftest import ScriptWriter
from tests.support.echo_rig import EchoRig
from tests.support.pulse import VirtualAudio
from tests.support.room import Room

LONG_REPLY = (
    "Here is a long answer on purpose.",
    "It keeps talking for a while, one sentence after another.",
    "The loudspeaker is right next to the microphone.",
    "Every word of it comes back to the microphone through the room.",
    "So the assistant must not take its own voice for yours.",
)
REPLIES = 4
AFTER_REPLY_S = 1.0
"""How long the end of the last reply's echo is given to (wrongly) start a turn."""


@pytest.fixture(scope="module")
def room_audio() -> Iterator[VirtualAudio]:
    """A private PulseAudio server whose microphone hears a room sink, not the speaker."""
    from assistant.audio.capture import rescan_devices

    with VirtualAudio(room_sink_name="virt_room") as audio:
        rescan_devices()
        yield audio
    rescan_devices()


@pytest.fixture
def rig(room_audio: VirtualAudio) -> Iterator[EchoRig]:
    """The room between the speaker and the microphone, running."""
    with EchoRig(room_audio, Room(delay_ms=40, attenuation_db=6, rt60_s=0.3)) as running:
        yield running


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken question after a short silence."""
    pcm = np.concatenate([np.zeros(4000, dtype=np.int16), synthesize("Tell me about the room")])
    return Path(write_wav(str(tmp_path_factory.mktemp("echo") / "question.wav"), pcm))


@pytest.fixture(scope="module")
def interruption_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user talking over the reply."""
    pcm = synthesize("Wait, stop, what about tomorrow?")
    return Path(write_wav(str(tmp_path_factory.mktemp("echo") / "stop.wav"), pcm))


def _listen(
    room_audio: VirtualAudio, tiny_model_dir: Path, script: Path, *extra: str
) -> ListenProcess:
    return ListenProcess(
        "--model", tiny_model_dir, "--forced-replies", script, *extra,
        env={"PULSE_SERVER": room_audio.server},
    )  # fmt: skip


def _spoken_after(listen: ListenProcess, count: int) -> float:
    """Wait until ``count`` sentences have been spoken and the agent listens again."""
    spoken = listen.wait_for(
        lambda e: (
            e["type"] == "spoken_sentence"
            and sum(1 for x in listen.events if x["type"] == "spoken_sentence") >= count
        ),
        timeout_s=120,
    )
    at_s = float(spoken["at_s"])
    listen.wait_for(lambda e: e.get("state") == "listening" and e["at_s"] >= at_s, timeout_s=60)
    return at_s


def test_over_many_replies_on_open_speakers_the_agent_never_interrupts_itself(
    room_audio: VirtualAudio,
    rig: EchoRig,
    tiny_model_dir: Path,
    question_wav: Path,
    forced_replies: ScriptWriter,
) -> None:
    """By default, echo cancellation keeps every reply's echo from starting a turn."""
    script = forced_replies(
        transcripts=["Tell me about the room."] * REPLIES,
        replies=[{"text": " ".join(LONG_REPLY)}] * REPLIES,
    )
    listen = _listen(room_audio, tiny_model_dir, script)
    try:
        listen.wait_for(lambda e: e.get("state") == "listening", timeout_s=60)
        for turn in range(1, REPLIES + 1):
            rig.say(question_wav)
            _spoken_after(listen, turn * len(LONG_REPLY))
        time.sleep(AFTER_REPLY_S)
        assert listen.interrupt() == 0
    finally:
        listen.kill()
    assert "echo cancellation on" in listen.stderr  # not half-duplex, which never hears echo
    assert "echo canceller adapted: full duplex" in listen.stderr  # measured, not timed out
    events = listen.events
    spoken = [e for e in events if e["type"] == "spoken_sentence"]
    assert [s["text"] for s in spoken] == list(LONG_REPLY) * REPLIES
    assert not any(s["interrupted"] for s in spoken)
    # A burst of residual echo may still start speech; then it is ignored (too short to
    # interrupt), never a turn: every other start is the user's question.
    ignored = [e for e in events if e["type"] == "speech_ignored"]
    assert len([e for e in events if e["type"] == "speech_started"]) == REPLIES + len(ignored)
    assert len([e for e in events if e["type"] == "utterance"]) == REPLIES


def test_on_open_speakers_the_user_interrupts_the_reply(
    room_audio: VirtualAudio,
    rig: EchoRig,
    tiny_model_dir: Path,
    question_wav: Path,
    interruption_wav: Path,
    forced_replies: ScriptWriter,
) -> None:
    """Talking over the reply stops it (barge-in follows echo cancellation) and is answered."""
    script = forced_replies(
        transcripts=["Tell me about the room.", "Wait, stop, what about tomorrow?"],
        replies=[{"text": " ".join(LONG_REPLY)}, {"text": "Tomorrow is sunny."}],
    )
    listen = _listen(room_audio, tiny_model_dir, script, "--echo-cancellation", "on")
    try:
        listen.wait_for(lambda e: e.get("state") == "listening", timeout_s=60)
        rig.say(question_wav)
        # Three sentences said (9 s of sound): the canceller has adapted (about 6.3 s of sound
        # here, 15 s at the latest), the fourth is playing.
        listen.wait_for(
            lambda e: e["type"] == "spoken_sentence" and e["text"] == LONG_REPLY[2],
            timeout_s=120,
        )
        rig.say(interruption_wav)
        cut = listen.wait_for(lambda e: e["type"] == "spoken_sentence" and e["interrupted"])
        listen.wait_for(lambda e: e["type"] == "turn_done" and e["text"] == "Tomorrow is sunny.")
        assert listen.interrupt() == 0
    finally:
        listen.kill()
    # Cut after the user spoke (during the fourth sentence): AEC3 hears double talk late, by
    # up to a sentence on a busy machine, but never took an earlier sentence for the user.
    assert LONG_REPLY.index(cut["text"]) >= 3
    utterances = [e for e in listen.events if e["type"] == "utterance"]
    assert len(utterances) == 2


def test_without_echo_cancellation_barge_in_on_open_speakers_interrupts_itself(
    room_audio: VirtualAudio,
    rig: EchoRig,
    tiny_model_dir: Path,
    question_wav: Path,
    forced_replies: ScriptWriter,
) -> None:
    """The rig's echo is real: with the canceller off, barge-in takes the reply for the user."""
    script = forced_replies(
        transcripts=["Tell me about the room.", "Here is"],
        replies=[{"text": " ".join(LONG_REPLY)}, {"text": "Yes?"}],
    )
    listen = _listen(room_audio, tiny_model_dir, script, "--echo-cancellation", "off", "--barge-in")
    try:
        listen.wait_for(lambda e: e.get("state") == "listening", timeout_s=60)
        rig.say(question_wav)
        # The echo may need a sentence or two to reach the VAD on a busy machine; a reply said
        # to its end (its last sentence not interrupted) means the echo never counted.
        cut = listen.wait_for(
            lambda e: (
                e["type"] == "spoken_sentence" and (e["interrupted"] or e["text"] == LONG_REPLY[-1])
            ),
            timeout_s=120,
        )
        assert listen.interrupt() == 0
    finally:
        listen.kill()
    assert cut["interrupted"]
