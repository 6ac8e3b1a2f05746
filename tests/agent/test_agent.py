"""The voice agent pipeline: frames → VAD → dialogue → display and speech, on the tiny model."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.audio.vad import VadSegmenter
from assistant.audio.wake import MicroWakeWordDetector
from assistant.config import DialogueSettings, ListenSettings
from assistant.conversation.dialogue import Dialogue
from assistant.desktop.agent import EchoGate, VoiceAgent, file_frames
from assistant.desktop.display import JsonDisplay
from assistant.events import Announcement
from assistant.model.worker import ModelWorker
from assistant.speech.playback import SoundDevicePlayer
from assistant.speech.speaker import Speaker
from assistant.speech.synthesis import EspeakSynthesizer, LanguageFollowingSynthesizer
from assistant.testing.forced import ScriptedReplies
from assistant.testing.speech import synthesize
from assistant.tools import load_tools
from tests.agent.conftest import REPLY_TEXT, TOOL_CALL, TRANSCRIPT
from tests.agent.sound import WatchedPlayer
from tests.dialogue.house import House
from tests.support.pulse import VirtualAudio

LONG_REPLY = (
    "This reply is long on purpose. It goes on for a few sentences. "
    "That leaves time to talk over it."
)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(16000 * seconds), dtype=np.int16)


def _recording(*parts: str | float) -> np.ndarray:
    """Speech (strings, espeak-ng) and silences (seconds) one after another."""
    return np.concatenate([synthesize(p) if isinstance(p, str) else _silence(p) for p in parts])


Cue = Callable[[], bool]


async def _paced(*parts: np.ndarray | Cue, timeout_s: float = 60.0) -> AsyncIterator[np.ndarray]:
    """A microphone: recordings in real time, and silence until each cue holds.

    Cues time the user by what the assistant does, not by the clock: a busy machine answers
    late, and a user who talks over a reply does it once the reply is heard.
    """
    for part in parts:
        if isinstance(part, np.ndarray):
            async for frame in file_frames(part, realtime=True, trailing_silence_ms=0):
                yield frame
            continue
        deadline_s = time.monotonic() + timeout_s
        while not part():
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"the assistant did not get there in {timeout_s} s")
            await asyncio.sleep(0.02)
            yield _silence(0.02)


WorkerFactory = Callable[[ScriptedReplies], ModelWorker]


@pytest.fixture
def make_worker(tiny_model_dir: Path) -> Iterator[WorkerFactory]:
    """Tiny-model workers that play a forced script; closed after the test."""
    workers: list[ModelWorker] = []

    def make(script: ScriptedReplies) -> ModelWorker:
        tokenizer = MistralTokenizer.from_file(str(tiny_model_dir / "tekken.json"))
        script.bind(tokenizer)
        worker = ModelWorker.load(
            tiny_model_dir, device="cpu", logits_processor_factory=script.logits_processors
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


async def _run(
    agent: VoiceAgent, frames: AsyncIterator[np.ndarray], **options: Any
) -> list[dict[str, Any]]:
    try:
        await agent.run(frames, **options)
    finally:
        await agent.dialogue.aclose()
    assert isinstance(agent.display, JsonDisplay)
    stream = agent.display.stream
    assert isinstance(stream, io.StringIO)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _script(
    transcripts: Sequence[str] = (), replies: Sequence[dict[str, Any]] = ()
) -> ScriptedReplies:
    """Transcripts and replies (``{"text": ...}`` / ``{"tool_calls": [...]}``) to force."""
    script = ScriptedReplies()
    for text in transcripts:
        script.hear(text)
    for reply in replies:
        script.say(reply.get("text"), reply.get("tool_calls", ()))
    return script


def _agent(
    worker: ModelWorker,
    tools: Any = None,
    speaker: Speaker | None = None,
    *,
    barge_in: bool = False,
    announcements: asyncio.Queue[Announcement] | None = None,
    min_interrupt_speech_ms: int = 500,
) -> VoiceAgent:
    settings = DialogueSettings(
        interrupt_response=barge_in, min_interrupt_speech_ms=min_interrupt_speech_ms
    )
    dialogue = Dialogue(worker, tools, settings)
    display = JsonDisplay(io.StringIO())
    return VoiceAgent(
        dialogue,
        VadSegmenter(),
        display,
        speaker,
        settings=ListenSettings(barge_in=barge_in),
        announcements=announcements,
    )


class _HeldSynthesizer(EspeakSynthesizer):
    """espeak-ng that holds one sentence (on the speaker's synthesis thread) until released."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.held = threading.Event()
        self.released = threading.Event()

    def synthesize(self, text: str) -> np.ndarray:
        """Wait for ``released`` first when ``text`` is the held sentence."""
        if text == self.text and not self.released.is_set():
            self.held.set()
            assert self.released.wait(60), "the held sentence was never released"
        return super().synthesize(text)


def _types(records: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] in kinds]


def _shown(agent: VoiceAgent, kind: str) -> int:
    """How many ``kind`` records the agent's JSON display has written so far."""
    assert isinstance(agent.display, JsonDisplay)
    stream = agent.display.stream
    assert isinstance(stream, io.StringIO)
    return sum(json.loads(line)["type"] == kind for line in stream.getvalue().splitlines())


# --- the echo gate and file input -----------------------------------------------------------


def test_the_echo_gate_is_closed_while_speaking_and_for_the_tail() -> None:
    """Half-duplex: closed while the assistant speaks and for the tail after; open otherwise."""
    gate = EchoGate(tail_ms=400)
    assert gate.closed(speaking=True, last_sound_end_s=0.0, now_s=10.0)
    assert gate.closed(speaking=False, last_sound_end_s=10.0, now_s=10.3)
    assert not gate.closed(speaking=False, last_sound_end_s=10.0, now_s=10.5)
    assert not gate.closed(speaking=False, last_sound_end_s=0.0, now_s=0.1)


def test_a_negative_echo_tail_is_refused() -> None:
    """The tail is a duration: negative values are an error."""
    with pytest.raises(ValueError, match="echo tail"):
        EchoGate(tail_ms=-1)


async def test_a_recording_becomes_whole_frames_followed_by_silence() -> None:
    """Every frame has frame_ms of samples; the audio comes first, then trailing silence."""
    audio = (np.arange(16000 + 123) % 1000 + 1).astype(np.int16)
    frames = [
        f async for f in file_frames(audio, realtime=False, frame_ms=20, trailing_silence_ms=500)
    ]
    joined = np.concatenate(frames)
    assert {len(f) for f in frames} == {320}
    assert np.array_equal(joined[: len(audio)], audio)
    assert len(joined) >= len(audio) + 8000 and not joined[len(audio) :].any()


async def test_a_recording_read_in_real_time_takes_as_long_as_it_lasts() -> None:
    """Paced reading delivers one second of audio in no less than about a second."""
    started = time.monotonic()
    async for _ in file_frames(_silence(0.8), realtime=True, trailing_silence_ms=200):
        pass
    assert time.monotonic() - started >= 0.95


# --- turns ----------------------------------------------------------------------------------


async def _tool_turn(make_worker: WorkerFactory, tools_file: Path) -> list[dict[str, Any]]:
    """One spoken command answered with a get_time call and a reply: the displayed records."""
    script = _script([TRANSCRIPT], [{"tool_calls": [TOOL_CALL]}, {"text": REPLY_TEXT}])
    agent = _agent(make_worker(script), load_tools(tools_file))
    frames = file_frames(_recording(0.5, "What time is it"), realtime=False)
    return await _run(agent, frames, turn_by_turn=True)


async def test_an_utterance_is_answered_with_a_tool_call_and_a_reply(
    make_worker: WorkerFactory, tools_file: Path
) -> None:
    """The VAD's utterance becomes a turn: transcript, tool call and result, reply, done."""
    records = await _tool_turn(make_worker, tools_file)
    kinds = [r["type"] for r in records if r["type"] != "agent_status"]
    assert kinds[:4] == ["speech_started", "speech_end_likely", "speech_stopped", "utterance"]
    assert kinds[-1] == "turn_done"
    (result,) = _types(records, "tool_result")
    assert result["name"] == "get_time" and result["ok"]
    assert json.loads(result["content"])["timezone"] == "UTC"
    (transcript,) = _types(records, "user_transcript")
    assert transcript["text"] == TRANSCRIPT
    deltas = "".join(r["text"] for r in _types(records, "text_delta"))
    (done,) = _types(records, "turn_done")
    assert deltas == done["text"] == REPLY_TEXT
    assert done["metrics"]["speech_end_to_first_delta_ms"] > 0


async def test_with_an_eager_end_a_complete_command_is_answered_before_the_hangover(
    make_worker: WorkerFactory, tools_file: Path
) -> None:
    """vad.eager_silence_ms: once the preemptive reply holds the tool call, the turn ends after
    that much silence instead of the 500 ms hangover, and runs as usual."""
    script = _script([TRANSCRIPT], [{"tool_calls": [TOOL_CALL]}, {"text": REPLY_TEXT}])
    dialogue = Dialogue(make_worker(script), load_tools(tools_file), DialogueSettings())
    agent = VoiceAgent(
        dialogue,
        VadSegmenter(silence_duration_ms=500, eager_silence_ms=100),
        JsonDisplay(io.StringIO()),
        None,
        settings=ListenSettings(),
    )
    fed_ms: list[int] = []

    async def microphone() -> AsyncIterator[np.ndarray]:
        speech = _recording(0.5, "What time is it")
        async for frame in file_frames(speech, realtime=False, trailing_silence_ms=0):
            yield frame
        sent_ms = len(speech) // 16
        # Silence 20 ms at a time, slowly: the speculation has time to finish in between.
        while not _shown(agent, "speech_stopped"):
            assert sent_ms < len(speech) // 16 + 2000, "speech never stopped"
            await asyncio.sleep(0.25)
            yield _silence(0.02)
            sent_ms += 20
        fed_ms.append(sent_ms)
        yield _silence(1.0)

    records = await _run(agent, microphone(), turn_by_turn=True)
    (stopped,) = _types(records, "speech_stopped")
    assert fed_ms[0] - stopped["end_ms"] < 500  # the hangover never ran out
    (result,) = _types(records, "tool_result")
    assert result["name"] == "get_time" and result["ok"]
    (done,) = _types(records, "turn_done")
    assert done["text"] == REPLY_TEXT and done["metrics"]["preempted"]


async def test_the_status_line_follows_the_turn(
    make_worker: WorkerFactory, tools_file: Path
) -> None:
    """Listening, hearing you, thinking, calling the tool, thinking, listening: in that order."""
    records = await _tool_turn(make_worker, tools_file)
    states = [(r["state"], r["detail"]) for r in _types(records, "agent_status")]
    assert states == [
        ("listening", ""),
        ("hearing", ""),
        ("listening", ""),
        ("thinking", ""),
        ("calling_tool", "get_time"),
        ("thinking", ""),
        ("listening", ""),
    ]


async def test_each_utterance_of_a_recording_gets_its_own_turn_in_order(
    make_worker: WorkerFactory,
) -> None:
    """Two commands separated by silence are two turns, answered one after the other."""
    script = _script(["One", "Two"], [{"text": "First answer."}, {"text": "Second answer."}])
    agent = _agent(make_worker(script))
    frames = file_frames(_recording(0.3, "Lights on", 1.5, "Lights off"), realtime=False)
    records = await _run(agent, frames, turn_by_turn=True)
    assert [r["text"] for r in _types(records, "turn_done")] == ["First answer.", "Second answer."]
    kinds = [r["type"] for r in _types(records, "utterance", "turn_done")]
    assert kinds == ["utterance", "turn_done", "utterance", "turn_done"]


# --- speech and echo ------------------------------------------------------------------------


async def test_barge_in_cuts_the_reply_to_what_was_heard_and_answers_the_new_turn(
    make_worker: WorkerFactory, virtual_audio: VirtualAudio
) -> None:
    """Speech during a reply stops the voice, cuts the reply in the history, is answered next."""
    script = _script(
        ["Lights on", "Tell me something", "Stop talking now"],
        [{"text": "Done."}, {"text": LONG_REPLY}, {"text": "Sure, stopping."}],
    )
    player = WatchedPlayer()
    speaker = await Speaker(EspeakSynthesizer(), player).start()
    agent = _agent(make_worker(script), speaker=speaker, barge_in=True)
    frames = _paced(
        _recording(0.3, "Lights on"),
        lambda: player.finished == 1,  # "Done." was heard
        _recording(0.5, "Tell me something"),
        # The reply is written and its second sentence sounds: the user talks over it.
        lambda: player.started >= 3 and not agent.dialogue.is_responding,
        _recording("Stop talking now", 1.0),
    )
    try:
        records = await _run(agent, frames, gate_echo=False)
    finally:
        await speaker.aclose()
    spoken = _types(records, "spoken_sentence")
    assert [s["text"] for s in spoken][:2] == ["Done.", "This reply is long on purpose."]
    assert [s["interrupted"] for s in spoken][-2:] == [True, False]
    assert spoken[-1]["text"] == "Sure, stopping."
    assert len(_types(records, "utterance")) == 3
    done = ["Done.", LONG_REPLY, "Sure, stopping."]
    assert [r["text"] for r in _types(records, "turn_done")] == done
    # The history keeps what was heard of the cut reply, not of the replies before it.
    replies = [m.content for m in agent.dialogue.history if isinstance(m, AssistantMessage)]
    assert replies[0] == "Done." and replies[-1] == "Sure, stopping."
    (cut,) = replies[1:-1]
    assert isinstance(cut, str) and cut and LONG_REPLY.startswith(cut) and cut != LONG_REPLY


async def _yes_over_the_reply(
    agent: VoiceAgent, player: WatchedPlayer, request: str, *, sentences: int
) -> list[dict[str, Any]]:
    """Say ``request``; say "Yes." once ``sentences`` of the reply have started to sound; stay
    silent until the agent is done. The display's records."""
    speaker = agent.speaker
    assert speaker is not None
    frames = _paced(
        _recording(0.3, request),
        lambda: player.started >= sentences,
        _recording("Yes.", 1.0),
        lambda: not speaker.speaking and not agent.dialogue.is_responding,
        _silence(0.5),
    )
    return await _run(agent, frames, gate_echo=False)


async def test_short_speech_over_a_reply_neither_interrupts_it_nor_becomes_a_turn(
    make_worker: WorkerFactory, virtual_audio: VirtualAudio
) -> None:
    """A "yes" (400 ms voiced, under ``min_interrupt_speech_ms``) over the reply: like a cough
    or a burst of the reply's own echo, it is shown as ignored; the reply is said whole."""
    script = _script(["Tell me something"], [{"text": LONG_REPLY}])
    player = WatchedPlayer()
    speaker = await Speaker(EspeakSynthesizer(), player).start()
    agent = _agent(make_worker(script), speaker=speaker, barge_in=True)
    try:
        # "Yes." while the reply's second sentence sounds.
        records = await _yes_over_the_reply(agent, player, "Tell me something", sentences=2)
    finally:
        await speaker.aclose()
    spoken = _types(records, "spoken_sentence")
    assert not any(s["interrupted"] for s in spoken)
    assert " ".join(s["text"] for s in spoken) == LONG_REPLY
    (ignored,) = _types(records, "speech_ignored")
    assert 250 <= ignored["voiced_ms"] < 500
    assert len(_types(records, "utterance")) == 1
    assert len(_types(records, "turn_done")) == 1


async def test_a_short_yes_over_the_confirmation_question_answers_it(
    make_worker: WorkerFactory, virtual_audio: VirtualAudio
) -> None:
    """While a confirmation is pending, a short answer said over the question is kept: it does
    not cut the question, and once it has been said the door is unlocked."""
    unlock = {"name": "unlock_door", "arguments": {"door": "front"}}
    script = _script(
        ["Unlock the front door", "Yes."],
        [{"tool_calls": [unlock]}, {"text": "The front door is open."}],
    )
    house = House()
    player = WatchedPlayer()
    speaker = await Speaker(EspeakSynthesizer(), player).start()
    agent = _agent(make_worker(script), house.tools, speaker=speaker, barge_in=True)
    try:
        # "Yes." while the question sounds.
        records = await _yes_over_the_reply(agent, player, "Unlock the front door", sentences=1)
    finally:
        await speaker.aclose()
        await house.tools.aclose()
    assert _types(records, "speech_ignored") == []
    assert not any(s["interrupted"] for s in _types(records, "spoken_sentence"))
    assert [name for _, name, _ in house.runs] == ["unlock_door"]
    assert _types(records, "turn_done")[-1]["text"] == "The front door is open."


class _InstantPlayer:
    """A player that hears every clip whole at once (no sound device)."""

    def play(self, pcm: np.ndarray, sample_rate_hz: int, stop: Any) -> float:
        return len(pcm) / sample_rate_hz


async def test_a_reply_too_short_to_tell_its_language_is_said_in_the_users(
    make_worker: WorkerFactory,
) -> None:
    """Without a fixed voice, after the user spoke French a reply like "OK." is said in the
    French voice (the language of the user's transcript), not the English default."""
    script = _script(
        ["lang:fr Allume la lumière", "lang:fr Et dans la cuisine"],
        [{"text": "OK."}, {"text": "OK."}],
    )
    said: list[tuple[str, str]] = []

    class Voice:
        sample_rate_hz = 16000

        def __init__(self, name: str) -> None:
            self.name = name

        def synthesize(self, text: str) -> np.ndarray:
            said.append((self.name, text))
            return np.zeros(1600, dtype=np.int16)

    synthesizer = LanguageFollowingSynthesizer(Voice, {"en": "en-us", "fr": "fr-fr"}, "en")
    speaker = await Speaker(synthesizer, _InstantPlayer()).start()
    agent = _agent(make_worker(script), speaker=speaker)
    frames = _paced(
        _recording(0.3, "Turn on the light", 1.0),
        lambda: len(said) == 1,
        _recording("In the kitchen too", 1.0),
        lambda: len(said) == 2,
    )
    try:
        await _run(agent, frames, gate_echo=False)
    finally:
        await speaker.aclose()
    # The first reply may be said before the transcript comes; the second follows it surely.
    assert said[-1] == ("fr-fr", "OK.")


async def test_barge_in_before_a_written_reply_is_said_drops_it(
    make_worker: WorkerFactory, virtual_audio: VirtualAudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Speech after the reply was written but before it sounds: it is never said, nor kept."""
    script = _script(["Lights on", "Lights off"], [{"text": "Done."}, {"text": "Off."}])
    worker = make_worker(script)
    # The reply is written (its turn done) while its only sentence is still being synthesized:
    # the synthesizer holds it until the user has started speaking over it.
    synthesizer = _HeldSynthesizer("Done.")
    speaker = await Speaker(synthesizer, SoundDevicePlayer()).start()
    # Speech interrupts at its start (the synthesizer is released when it is shown).
    agent = _agent(worker, speaker=speaker, barge_in=True, min_interrupt_speech_ms=0)
    show = agent.display.show

    def show_then_release(event: Any) -> None:
        show(event)  # the agent shows SpeechStarted before it interrupts the speaker
        if _shown(agent, "speech_started") == 2:
            synthesizer.released.set()

    monkeypatch.setattr(agent.display, "show", show_then_release)

    async def user() -> AsyncIterator[np.ndarray]:
        spoken_over = _paced(
            _recording(0.3, "Lights on"),
            lambda: synthesizer.held.is_set() and not agent.dialogue.is_responding,
            _recording(0.5, "Lights off"),
            lambda: _shown(agent, "speech_started") == 2,
            _silence(1.0),
        )
        async for frame in spoken_over:
            yield frame

    try:
        records = await _run(agent, user(), gate_echo=False)
    finally:
        await speaker.aclose()
    assert [s["text"] for s in _types(records, "spoken_sentence")] == ["Off."]
    replies = [m.content for m in agent.dialogue.history if isinstance(m, AssistantMessage)]
    assert replies == ["Off."]
    assert len(_types(records, "utterance")) == 2


async def test_a_broken_speaker_is_reported_once_and_the_conversation_goes_on(
    make_worker: WorkerFactory,
) -> None:
    """Speech that cannot be played becomes one error line; replies still arrive as text."""
    script = _script(["One", "Two"], [{"text": "First answer."}, {"text": "Second answer."}])
    speaker = await Speaker(EspeakSynthesizer(), SoundDevicePlayer("no such speaker")).start()
    agent = _agent(make_worker(script), speaker=speaker)
    frames = file_frames(_recording(0.3, "Lights on", 1.5, "Lights off"), realtime=False)
    try:
        records = await _run(agent, frames, gate_echo=False, turn_by_turn=True)
    finally:
        await speaker.aclose()
    assert not _types(records, "spoken_sentence")
    (error,) = _types(records, "error_event")
    assert error["code"] == "speech_error" and "no such speaker" in error["message"]
    assert [r["text"] for r in _types(records, "turn_done")] == ["First answer.", "Second answer."]


async def test_tool_announcements_are_shown_and_said_while_listening(
    make_worker: WorkerFactory, virtual_audio: VirtualAudio
) -> None:
    """A timer's announcement appears on the display and is spoken, without any user turn."""
    announcements: asyncio.Queue[Announcement] = asyncio.Queue()
    speaker = await Speaker(EspeakSynthesizer(), SoundDevicePlayer()).start()
    agent = _agent(make_worker(_script()), speaker=speaker, announcements=announcements)
    announcements.put_nowait(Announcement("Your pasta is ready.", "set_timer"))
    # Another conversation's timer (a server sharing the registry) is not ours to say.
    announcements.put_nowait(Announcement("Not yours.", "set_timer", conversation_id="other"))
    try:
        records = await _run(agent, file_frames(_silence(0.5), realtime=True))
    finally:
        await speaker.aclose()
    (shown,) = _types(records, "announcement")
    assert shown["text"] == "Your pasta is ready." and shown["source"] == "set_timer"
    (said,) = _types(records, "spoken_sentence")
    assert said["text"] == "Your pasta is ready." and not said["interrupted"]
    assert not _types(records, "utterance")


# --- the wake word --------------------------------------------------------------------------

WAKE_QUESTION = "What time is it"


def _wake_agent(make_worker: WorkerFactory, replies: int) -> VoiceAgent:
    script = _script([WAKE_QUESTION] * replies, [{"text": "Ten past ten."}] * replies)
    dialogue = Dialogue(make_worker(script), None, DialogueSettings())
    return VoiceAgent(
        dialogue,
        VadSegmenter(),
        JsonDisplay(io.StringIO()),
        settings=ListenSettings(wake_word="okay_nabu", follow_up_s=5.0),
        wake_word=MicroWakeWordDetector("okay_nabu"),
    )


async def test_speech_before_the_wake_word_is_ignored_and_after_it_answered(
    make_worker: WorkerFactory,
) -> None:
    """Only the request after "okay nabu" becomes a turn; the status says what to say first."""
    agent = _wake_agent(make_worker, replies=1)
    audio = _recording(WAKE_QUESTION, 1.5, "okay nabu", 0.8, WAKE_QUESTION, 1.5)
    records = await _run(agent, file_frames(audio, realtime=False), turn_by_turn=True)
    assert len(_types(records, "wake_word_detected")) == 1
    assert len(_types(records, "utterance")) == 1
    statuses = [r["state"] for r in _types(records, "agent_status")]
    assert statuses[0] == "waiting_for_wake_word"


async def test_a_follow_up_within_the_window_needs_no_wake_word(
    make_worker: WorkerFactory,
) -> None:
    """A second request soon after the reply is answered without the wake word."""
    agent = _wake_agent(make_worker, replies=2)
    audio = _recording("okay nabu", 0.8, WAKE_QUESTION, 1.5, WAKE_QUESTION, 1.5)
    records = await _run(agent, file_frames(audio, realtime=False), turn_by_turn=True)
    assert len(_types(records, "utterance")) == 2


async def test_after_the_window_it_waits_for_the_wake_word_again(
    make_worker: WorkerFactory,
) -> None:
    """A request long after the last reply is ignored."""
    agent = _wake_agent(make_worker, replies=2)
    audio = _recording("okay nabu", 0.8, WAKE_QUESTION, 8.0, WAKE_QUESTION, 1.5)
    records = await _run(agent, file_frames(audio, realtime=False), turn_by_turn=True)
    assert len(_types(records, "utterance")) == 1
    assert [r["state"] for r in _types(records, "agent_status")][-1] == "waiting_for_wake_word"
