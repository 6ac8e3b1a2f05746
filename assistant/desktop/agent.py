"""The desktop voice agent: audio frames → VAD → dialogue → display and spoken replies.

``VoiceAgent.run(frames)`` drives one conversation from a stream of 16 kHz int16 frames (the
microphone, or ``file_frames`` for a recording). Two tasks share the work: the hearing loop
feeds the VAD and queues each finished utterance; the turn loop hands queued utterances to the
dialogue, shows its events, and speaks the reply sentence by sentence as it streams.

Preemptive turns: at the first silent frame after speech the hearing loop hands the dialogue the
utterance the VAD will commit if the user stays silent (``Dialogue.speculate``), so that the
reply is ready when the hangover ends; more speech discards it. With ``vad.eager_silence_ms``
the turn ends after that much silence once the preemptive reply to the speech being heard has
begun a tool call (``Dialogue.speculation_acts_on`` the VAD's announced utterance), without
waiting for the whole hangover. Transcripts come on
their own, after the reply has started; the display keeps the user's line first.

Echo: a loudspeaker's sound reaches the microphone, and the assistant must not take its own
voice for the user. With an ``EchoCanceller`` (``listen``'s default when it speaks) every
microphone frame has the reply's echo removed before the VAD hears it, so the agent is full
duplex and the user's speech interrupts the reply (barge-in); until the canceller has adapted
(its first seconds of sound) the agent stays half-duplex. Without one it is half-duplex
(``EchoGate``): while it speaks, and for a short tail after, the VAD hears silence instead of
the microphone; ``barge_in`` then turns the gate off, for headphones only.

Wake word: with a ``WakeWordDetector`` the agent hears nothing but the detector until the wake
word is said; then it takes requests as long as ``Attention`` allows (a request, and follow-ups
within ``follow_up_s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from assistant.audio.echo import EchoCanceller
from assistant.audio.vad import VadEvent, VadSegmenter
from assistant.audio.wake import WakeWordDetector
from assistant.config import ListenSettings
from assistant.desktop.attention import Attention
from assistant.desktop.display import Display, SpeechIgnored, UserClip
from assistant.events import (
    SAMPLE_RATE_HZ,
    AgentStatus,
    Announcement,
    DialogueEvent,
    ErrorEvent,
    SpeechEndLikely,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    SpokenSentence,
    TextDelta,
    ToolResult,
    ToolStarted,
    TranscriptEvent,
    TurnDone,
    UserTranscript,
    Utterance,
    WakeWordDetected,
)
from assistant.speech.chime import chime_pcm
from assistant.speech.sentences import SentenceSplitter
from assistant.speech.speaker import Speaker
from assistant.speech.synthesis import LanguageFollowingSynthesizer

if TYPE_CHECKING:  # the dialogue pulls in torch: ``listen`` checks its options before that
    from assistant.conversation.dialogue import Dialogue


def barge_in_enabled(settings: ListenSettings, cancelling: bool) -> bool:
    """Whether speech interrupts the reply: as set, else exactly when echo is cancelled."""
    return cancelling if settings.barge_in is None else settings.barge_in


class EchoGate:
    """Half-duplex echo handling: closed while the assistant speaks and ``tail_ms`` after."""

    def __init__(self, tail_ms: int) -> None:
        if tail_ms < 0:
            raise ValueError(f"the echo tail must be 0 ms or more, not {tail_ms}")
        self.tail_s = tail_ms / 1000

    def closed(self, speaking: bool, last_sound_end_s: float, now_s: float) -> bool:
        """Whether microphone audio heard at ``now_s`` may be the assistant's own voice."""
        if speaking:
            return True
        return last_sound_end_s > 0 and now_s - last_sound_end_s < self.tail_s


async def file_frames(
    samples: np.ndarray,
    *,
    realtime: bool,
    frame_ms: int = 20,
    trailing_silence_ms: int = 1000,
) -> AsyncIterator[np.ndarray]:
    """A recording (16 kHz mono int16) as frames: paced like a microphone, or at once.

    Silence follows the recording so that the VAD hears the end of the last utterance.
    """
    frame = SAMPLE_RATE_HZ * frame_ms // 1000
    silence = np.zeros(SAMPLE_RATE_HZ * trailing_silence_ms // 1000, dtype=np.int16)
    audio = np.concatenate([samples.astype(np.int16, copy=False), silence])
    started_s = time.monotonic()
    for index, offset in enumerate(range(0, len(audio), frame)):
        if realtime:
            # Against the start time, not frame by frame: sleep overshoots do not add up.
            await asyncio.sleep(max(0.0, started_s + index * frame_ms / 1000 - time.monotonic()))
        else:
            await asyncio.sleep(0)
        chunk = audio[offset : offset + frame]
        yield chunk if len(chunk) == frame else np.pad(chunk, (0, frame - len(chunk)))


@dataclass(frozen=True, eq=False)
class _Turn:
    utterance: Utterance
    speech_end_s: float


class VoiceAgent:
    """One spoken conversation: hears utterances, answers them, shows and says the replies.

    ``speaker`` None means text only (``--no-speak``). ``announcements`` is the tool registry's
    queue of things to say unprompted (a timer that fired). ``echo_canceller`` cleans the
    microphone (its far end must be fed by the speaker's player); ``wake_word`` makes the agent
    wait for its wake word.
    """

    def __init__(
        self,
        dialogue: Dialogue,
        segmenter: VadSegmenter,
        display: Display,
        speaker: Speaker | None = None,
        *,
        settings: ListenSettings | None = None,
        announcements: asyncio.Queue[Announcement] | None = None,
        echo_canceller: EchoCanceller | None = None,
        wake_word: WakeWordDetector | None = None,
    ) -> None:
        settings = settings or ListenSettings()
        self.dialogue = dialogue
        self.segmenter = segmenter
        self.display = display
        self.speaker = speaker
        self.echo_canceller = echo_canceller
        self.barge_in = barge_in_enabled(settings, echo_canceller is not None)
        self.gate = EchoGate(settings.echo_tail_ms)
        self.announcements = announcements
        self.wake_word = wake_word
        self.attention = Attention(round(settings.follow_up_s * 1000))
        self._awake = wake_word is None
        self._chime = chime_pcm() if settings.chime and wake_word is not None else None
        self._turns: asyncio.Queue[_Turn] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._hearing = False
        self._responding = False
        self._over_reply = False
        """The speech being heard began during a reply (with barge-in on)."""
        self._voiced_ms = 0
        """Voiced audio of the speech being heard (kept until its utterance is handled)."""
        self._barge_in_pending = False
        self._tools: dict[str, str] = {}
        self._muted = False
        self._speech_failure_shown = False
        self._status: AgentStatus | None = None

        if speaker is not None:
            speaker.on_spoken = self._spoken
            speaker.on_speaking = self._speaking_changed
        dialogue.on_transcript = self._transcribed

    def _transcribed(self, event: TranscriptEvent) -> None:
        # Transcripts come on their own, after the reply has started (not among its events).
        self.display.show(event)
        if isinstance(event, UserTranscript):
            self._follow_language(event.language)

    def _spoken(self, sentence: SpokenSentence) -> None:
        self.display.show(sentence)

    def _speaking_changed(self, speaking: bool) -> None:
        self._update_status()

    async def run(
        self,
        frames: AsyncIterable[np.ndarray],
        *,
        gate_echo: bool = True,
        turn_by_turn: bool = False,
    ) -> None:
        """Listen to ``frames`` until they end (then finish the last turns) or until cancelled.

        ``gate_echo``: apply the half-duplex gate (a microphone near a loudspeaker; off with
        barge-in). ``turn_by_turn``: stop reading after each utterance until its reply has been
        given and said (a recording read faster than real time).
        """
        tasks = [asyncio.create_task(self._turn_loop(), name="agent-turns")]
        if self.announcements is not None:
            announcer = self._announce_loop(self.announcements)
            tasks.append(asyncio.create_task(announcer, name="agent-announcements"))
        hearing = asyncio.create_task(
            self._hear(frames, gate_echo, turn_by_turn), name="agent-hear"
        )
        try:
            self._update_status()
            await self._first_of(hearing, tasks)
            idle = asyncio.create_task(self._until_idle(), name="agent-idle")
            await self._first_of(idle, tasks)
        finally:
            for task in [hearing, *tasks]:
                task.cancel()
            await asyncio.gather(hearing, *tasks, return_exceptions=True)

    async def _first_of(self, main: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
        """Wait for ``main``; a helper that ends first (it failed) ends the run with its error."""
        done, _ = await asyncio.wait({main, *helpers}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not main:
                main.cancel()
                task.result()
                raise RuntimeError(f"{task.get_name()} ended unexpectedly")
        main.result()

    async def _until_idle(self) -> None:
        await self._idle.wait()
        if self.speaker is not None:
            await self.speaker.drain()

    # --- hearing ---------------------------------------------------------------------------

    async def _hear(
        self, frames: AsyncIterable[np.ndarray], gate_echo: bool, turn_by_turn: bool
    ) -> None:
        async for frame in frames:
            if self.echo_canceller is not None:
                frame = self.echo_canceller.process(frame)
            if gate_echo and self._echo_possible():
                # Silence keeps the VAD's clock running and closes any stretch it had open.
                frame = np.zeros_like(frame)
            if not self._attending(frame):
                frame = np.zeros_like(frame)
            for event in self.segmenter.process(frame):
                await self._on_vad(event, turn_by_turn)
            self._voiced_ms = max(self._voiced_ms, self.segmenter.voiced_ms)
            if self._barge_in_pending:
                await self._barge_in_once_long_enough()
            if self.dialogue.speculation_acts_on(self.segmenter.announced):
                # The preemptive reply to this speech holds a complete command: end the turn
                # before the hangover (with vad.eager_silence_ms).
                for event in self.segmenter.end_early():
                    await self._on_vad(event, turn_by_turn)
        for event in self.segmenter.flush():
            await self._on_vad(event, turn_by_turn)

    def _echo_possible(self) -> bool:
        speaker = self.speaker
        if speaker is None:
            return False
        if self.echo_canceller is not None:
            if self.echo_canceller.ready:
                return False  # full duplex: the echo is gone
        elif self.barge_in:
            return False  # headphones: no echo to keep out
        return self.gate.closed(speaker.speaking, speaker.last_sound_end_s, time.monotonic())

    def _attending(self, frame: np.ndarray) -> bool:
        """Whether the VAD may hear ``frame``: always, or (wake word) while ``Attention`` says."""
        if self.wake_word is None:
            return True
        now_ms = self.segmenter.stream_ms
        awake = self.attention.awake(now_ms, busy=self._busy())
        if not awake and self.wake_word.process(frame):
            self.attention.wake(now_ms)
            self.display.show(WakeWordDetected(self.wake_word.phrase, now_ms))
            if self._chime is not None and self.speaker is not None:
                self.speaker.play(self._chime, SAMPLE_RATE_HZ)
            awake = True
        if awake != self._awake:
            self._awake = awake
            if not awake:
                self.wake_word.reset()  # what it heard before the request is stale now
            self._update_status()
        return awake

    def _busy(self) -> bool:
        speaking = self.speaker is not None and self.speaker.speaking
        return self._hearing or self._responding or not self._turns.empty() or speaking

    async def _on_vad(self, event: VadEvent, turn_by_turn: bool) -> None:
        if isinstance(event, Utterance) and self._ignored(event):
            return
        self.display.show(event)
        if isinstance(event, SpeechStarted):
            self._hearing = True
            self._voiced_ms = self.segmenter.voiced_ms
            self._over_reply = self.barge_in and self._replying()
            self._update_status()
            if self._over_reply:
                await self._barge_in_once_long_enough()
        elif isinstance(event, SpeechEndLikely):
            # Only when the utterance would be answered at once: nothing queued or running.
            if event.utterance is not None and not self._responding and self._turns.empty():
                self.dialogue.speculate(event.utterance)
        elif isinstance(event, SpeechResumed):
            self.dialogue.discard_speculation()
        elif isinstance(event, SpeechStopped):
            self._hearing = False
            self._update_status()
        elif isinstance(event, Utterance):
            # The VAD decides after its silence hangover: the speech ended that long ago.
            late_s = max(0, self.segmenter.stream_ms - event.end_ms) / 1000
            self._idle.clear()
            self._turns.put_nowait(_Turn(event, time.monotonic() - late_s))
            self._update_status()
            if turn_by_turn:
                await self._until_idle()
        else:
            raise TypeError(f"unexpected VAD event {event!r}")

    def _replying(self) -> bool:
        # The turn, not the dialogue's response: a reply can be written (the response settled)
        # and not yet said, its last sentence held until ``TurnDone``. Said after the user
        # spoke, it would be talking over them.
        speaking = self.speaker is not None and self.speaker.speaking
        return speaking or self._responding

    async def _barge_in_once_long_enough(self) -> None:
        """Interrupt the reply once the speech over it has ``min_interrupt_speech_ms`` voiced
        (until then a cough, an "mm-hm" or a burst of the reply's own echo might be all)."""
        if self._voiced_ms < self.dialogue.settings.min_interrupt_speech_ms:
            self._barge_in_pending = True
            return
        self._barge_in_pending = False
        await self._interrupt()

    def _ignored(self, utterance: Utterance) -> bool:
        """Whether ``utterance`` began over a reply and stayed too short to interrupt it: it is
        not a turn (``SpeechIgnored`` is shown instead). A short answer to a confirmation
        question ("yes") is kept all the same."""
        over_reply, voiced_ms = self._over_reply, self._voiced_ms
        self._over_reply = self._barge_in_pending = False
        self._voiced_ms = 0
        if not over_reply or voiced_ms >= self.dialogue.settings.min_interrupt_speech_ms:
            return False
        if self.dialogue.awaiting_confirmation:
            return False
        self.dialogue.discard_speculation()  # a preemptive reply to it, if one started
        self.display.show(SpeechIgnored(utterance.start_ms, utterance.end_ms, voiced_ms))
        return True

    async def _interrupt(self) -> None:
        """Barge-in: stop the voice and the reply; the history keeps what was heard."""
        if not self._replying():
            return
        self._muted = True
        heard = await self.speaker.interrupt() if self.speaker is not None else None
        await self.dialogue.interrupt(heard)

    # --- answering -------------------------------------------------------------------------

    async def _turn_loop(self) -> None:
        while True:
            turns = [await self._turns.get()]
            while not self._turns.empty():
                turns.append(self._turns.get_nowait())
            for turn in turns:
                item_id = self.dialogue.add_user_turn(
                    audio=turn.utterance, speech_end_s=turn.speech_end_s
                )
                transcribed = self.dialogue.settings.transcribe_user
                self.display.show(UserClip(item_id, turn.utterance.duration_s, transcribed))
            self._responding, self._muted = True, False
            if self.speaker is not None:
                self.speaker.take_heard()  # a barge-in cuts this reply, not the earlier ones
            self._update_status()
            splitter = SentenceSplitter()
            try:
                async for event in self.dialogue.respond():
                    self._on_dialogue(event, splitter)
            finally:
                self._responding = False
                self._tools.clear()
            if self.speaker is not None:
                await self.speaker.drain()
                self._report_speech_failure()
            if self._turns.empty():
                self._idle.set()
            self._update_status()

    def _on_dialogue(self, event: DialogueEvent, splitter: SentenceSplitter) -> None:
        self.display.show(event)
        if isinstance(event, TextDelta):
            self._say(splitter.feed(event.text))
        elif isinstance(event, ToolStarted):
            self._tools[event.call.id] = event.call.name
        elif isinstance(event, ToolResult):
            self._tools.pop(event.call_id, None)
        elif isinstance(event, TurnDone):
            self._say(splitter.flush())
        self._update_status()

    def _follow_language(self, language: str | None) -> None:
        """Speak the language the user spoke until a reply's text clearly says otherwise: a
        reply too short to tell ("OK.") then comes in the user's language, not the last one."""
        synthesizer = self.speaker.synthesizer if self.speaker is not None else None
        if isinstance(synthesizer, LanguageFollowingSynthesizer):
            synthesizer.prefer(language)

    def _say(self, sentences: list[str]) -> None:
        if self.speaker is None or self._muted:
            return
        for sentence in sentences:
            self.speaker.say(sentence)

    def _report_speech_failure(self) -> None:
        """Show once that speech stopped working (the conversation goes on in text)."""
        failure = self.speaker.failure if self.speaker is not None else None
        if failure is not None and not self._speech_failure_shown:
            self._speech_failure_shown = True
            self.display.show(ErrorEvent("speech_error", str(failure)))

    async def _announce_loop(self, announcements: asyncio.Queue[Announcement]) -> None:
        while True:
            announcement = await announcements.get()
            if announcement.conversation_id not in (None, self.dialogue.conversation_id):
                continue
            self.dialogue.add_announcement(announcement)
            self.display.show(announcement)
            if self.speaker is not None:  # said even after a barge-in muted the last reply
                self.speaker.say(announcement.text)

    # --- status ----------------------------------------------------------------------------

    def _update_status(self) -> None:
        status = self._current_status()
        if status != self._status:
            self._status = status
            self.display.show(status)

    def _current_status(self) -> AgentStatus:
        if self._hearing:
            return AgentStatus("hearing")
        if self._tools:
            return AgentStatus("calling_tool", ", ".join(sorted(set(self._tools.values()))))
        if self.speaker is not None and self.speaker.speaking:
            return AgentStatus("speaking")
        if self._responding or not self._turns.empty():
            return AgentStatus("thinking")
        if not self._awake and self.wake_word is not None:
            return AgentStatus("waiting_for_wake_word", self.wake_word.phrase)
        return AgentStatus("listening")
