"""The ``listen`` command: check the set-up, load the model, run the voice agent, exit cleanly.

Everything that can be checked before the slow model load is checked first (the input file,
the microphone, the speech output, the tools file), so that a mistake costs a second, not a
minute. A machine with no speaker is no mistake: the replies are shown, not spoken, after one
warning. Ctrl-C (SIGINT) or SIGTERM stops the agent: the microphone is closed, speech stops,
the running reply is cancelled, the session log is finished, and the exit status is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from assistant.config import Settings, VadSettings
from assistant.desktop.agent import VoiceAgent, barge_in_enabled, file_frames
from assistant.desktop.display import Display, make_display
from assistant.events import AgentStatus

log = logging.getLogger(__name__)

CPU_WARNING = (
    "no GPU found: running Voxtral on the CPU, where a reply takes seconds instead of a "
    "fraction of a second (pass --device cpu to choose the CPU and hide this warning)"
)


NO_ECHO_CANCELLER_WARNING = (
    "%s; falling back to half-duplex: the assistant does not listen while it speaks, so you "
    "cannot interrupt it (pass --echo-cancellation off to hide this warning)"
)

ECHO_CANCELLER_ON = (
    "echo cancellation on (WebRTC AEC3): you can interrupt a reply by speaking, even on open "
    "speakers (--echo-cancellation off for half-duplex)"
)

NO_SPEAKER_WARNING = (
    "cannot play speech (%s): replies are shown as text only; connect a speaker or pick one "
    "with --output-device, or pass --no-speak to hide this warning"
)


class ListenError(Exception):
    """The agent cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class ListenOptions:
    """Everything ``listen`` needs beyond the settings; the defaults are the command's."""

    settings: Settings = field(default_factory=Settings)
    """Everything configurable: the model, the VAD, the dialogue, ``listen.*`` (devices,
    barge-in, echo tail) and ``speech.*`` (voice, rate)."""
    input_path: Path | None = None
    """Read this recording instead of the microphone."""
    realtime: bool = True
    """Read ``input_path`` at the pace of a microphone (else as fast as possible)."""
    display: str = "auto"
    """``auto``, ``rich``, ``plain`` or ``json``."""
    forced_replies: Path | None = None
    """Test aid: a JSON script of replies to force (``assistant.testing.forced``)."""


@dataclass(eq=False)
class _Prepared:
    """What the checks produced, ready for the run."""

    recording: np.ndarray | None = None
    synthesizer: Any = None
    tools: Any = None
    script: Any = None
    echo_canceller: Any = None
    wake_word: Any = None


def parse_device(value: int | str | None) -> int | str | None:
    """A device setting: an index when it is a number (``3`` or ``"3"``), else a name."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def run_listen(options: ListenOptions, stream: IO[str] | None = None) -> int:
    """Run the agent until its input ends or it is stopped; return the exit status."""
    prepared = _prepare(options)
    display = make_display(options.display, stream or sys.stdout)
    try:
        return asyncio.run(_main(options, prepared, display))
    finally:
        display.show(AgentStatus("stopped"))
        display.close()


# --- checks before loading ------------------------------------------------------------------


def _prepare(options: ListenOptions) -> _Prepared:
    prepared = _Prepared()
    if options.input_path is not None:
        prepared.recording = _read_recording(options.input_path)
    else:
        from assistant.audio.capture import MicError, find_input_device

        try:
            find_input_device(parse_device(options.settings.listen.input_device))
        except MicError as exc:
            raise ListenError(f"{exc} (or read a recording with --input FILE.wav)") from None
    if options.settings.listen.speak:
        prepared.synthesizer = _check_speech(options.settings)
    if prepared.synthesizer is not None and prepared.recording is None:
        prepared.echo_canceller = _echo_canceller(options.settings.listen.echo_cancellation)
    if options.settings.listen.wake_word is not None:
        from assistant.audio.wake import WakeWordUnavailable, load_wake_word

        try:
            prepared.wake_word = load_wake_word(options.settings.listen.wake_word)
        except WakeWordUnavailable as exc:
            raise ListenError(str(exc)) from None
    session_log = options.settings.dialogue.session_log_path
    if session_log is not None:
        _check_session_log(session_log)
    if options.forced_replies is not None:
        from assistant.testing.forced import ForcedScriptError, ScriptedReplies

        try:
            prepared.script = ScriptedReplies.from_file(options.forced_replies)
        except ForcedScriptError as exc:
            raise ListenError(str(exc)) from None
    from assistant.tools import ToolsFileError, load_configured_tools

    try:
        prepared.tools = load_configured_tools(options.settings.tools_file)
    except ToolsFileError as exc:
        raise ListenError(str(exc)) from None
    if options.settings.model.backend == "local" and options.settings.model.device == "auto":
        import torch

        if not torch.cuda.is_available():
            log.warning(CPU_WARNING)
    return prepared


def _read_recording(path: Path) -> np.ndarray:
    from assistant.audio.io import AudioError, float_to_pcm16, load_audio

    try:
        audio = load_audio(path)
    except AudioError as exc:
        raise ListenError(str(exc)) from None
    return float_to_pcm16(audio)


def _check_speech(settings: Settings) -> Any:
    """The synthesizer for spoken replies; None when there is no speaker to play them on.

    A machine without any speaker still gets text replies (after a warning); a speaker asked
    for by name must work, as must espeak-ng and the voice.
    """
    from assistant.speech.errors import SpeechError
    from assistant.speech.playback import SoundDevicePlayer
    from assistant.speech.synthesis import check_voice, make_synthesizer

    output_device = parse_device(settings.listen.output_device)
    player = SoundDevicePlayer(output_device)
    try:
        # The voice follows the language of each reply unless speech.voice fixes one.
        synthesizer = make_synthesizer(settings.speech)
        check_voice(synthesizer)  # an unknown voice fails here, not at the first reply
        if output_device is not None:
            player.check(synthesizer.sample_rate_hz)
            return synthesizer
        problem = player.problem(synthesizer.sample_rate_hz)
    except (SpeechError, ValueError) as exc:
        raise ListenError(str(exc)) from None
    if problem is not None:
        log.warning(NO_SPEAKER_WARNING, problem)
        return None
    return synthesizer


def _echo_canceller(mode: str) -> Any:
    """The echo canceller for spoken replies on a microphone; None when off or unavailable.

    ``auto`` falls back to half-duplex after one warning; ``on`` refuses to start without it.
    """
    if mode == "off":
        return None
    from assistant.audio.echo import EchoCancellerUnavailable, WebRtcEchoCanceller

    try:
        canceller = WebRtcEchoCanceller()
    except EchoCancellerUnavailable as exc:
        if mode == "on":
            raise ListenError(f"{exc} (or pass --echo-cancellation auto or off)") from None
        log.warning(NO_ECHO_CANCELLER_WARNING, exc)
        return None
    log.info(ECHO_CANCELLER_ON)
    return canceller


def _check_session_log(path: Path) -> None:
    """Refuse a session log that cannot be appended to (the dialogue opens it after the load)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ListenError(f"cannot write the session log {path}: {exc.strerror or exc}") from None


# --- the run --------------------------------------------------------------------------------


async def _main(options: ListenOptions, prepared: _Prepared, display: Display) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    session = asyncio.create_task(_session(options, prepared, display), name="listen")
    stopper = asyncio.create_task(stop.wait(), name="listen-stop")
    try:
        await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        session.cancel()
        outcome = (await asyncio.gather(session, return_exceptions=True))[0]
        for sig in signals:
            loop.remove_signal_handler(sig)
    if isinstance(outcome, Exception):
        raise outcome
    return 0


async def _session(options: ListenOptions, prepared: _Prepared, display: Display) -> None:
    from assistant.audio.vad import VadSegmenter
    from assistant.conversation.dialogue import Dialogue
    from assistant.speech.speaker import Speaker

    settings = options.settings
    display.show(AgentStatus("loading", settings.model.id))
    worker = await _load_worker(settings, prepared.script)
    try:
        # Speech interrupts a reply only where the agent lets it (barge-in).
        barge_in = barge_in_enabled(settings.listen, prepared.echo_canceller is not None)
        dialogue_settings = settings.dialogue.model_copy(update={"interrupt_response": barge_in})
        params = settings.model.generation_params()
        dialogue = Dialogue(worker, prepared.tools, dialogue_settings, params=params)
        speaker = None
        canceller = prepared.echo_canceller
        if prepared.synthesizer is not None:
            from assistant.speech.duplex_playback import ContinuousPlayer
            from assistant.speech.playback import SoundDevicePlayer

            output_device = parse_device(settings.listen.output_device)
            player = (
                ContinuousPlayer(output_device, far_end=canceller.far_end)
                if canceller is not None
                else SoundDevicePlayer(output_device)
            )
            speaker = Speaker(prepared.synthesizer, player)
        agent = VoiceAgent(
            dialogue,
            VadSegmenter(vad_settings(settings.vad, echo_cancelling=canceller is not None)),
            display,
            speaker,
            settings=settings.listen,
            announcements=prepared.tools.announcements,
            echo_canceller=prepared.echo_canceller,
            wake_word=prepared.wake_word,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(dialogue.aclose)
            if speaker is not None:
                await stack.enter_async_context(speaker)
            await _run_agent(agent, options, prepared, stack)
    finally:
        if prepared.tools is not None:
            await prepared.tools.aclose()
        await asyncio.to_thread(worker.close)


def vad_settings(base: VadSettings, *, echo_cancelling: bool) -> VadSettings:
    """The VAD's settings for ``listen``: with the echo canceller running, ``quiet_db`` is off.

    The canceller's suppressor turns the user's voice down while the speaker plays, so the level
    of what reaches the VAD says nothing about where speech ends: a barge-in would be cut into
    pieces (measured on the PulseAudio echo rig beside two busy loops). The classifier alone
    decides there, as before ``quiet_db``.
    """
    if echo_cancelling and base.quiet_db is not None:
        return base.model_copy(update={"quiet_db": None})
    return base


async def _run_agent(
    agent: VoiceAgent,
    options: ListenOptions,
    prepared: _Prepared,
    stack: contextlib.AsyncExitStack,
) -> None:
    frame_ms = options.settings.vad.frame_ms
    if prepared.recording is not None:
        frames: AsyncIterator[np.ndarray] = file_frames(
            prepared.recording, realtime=options.realtime, frame_ms=frame_ms
        )
        # A recording holds no echo of the speaker, and read fast it has no clock to share.
        await agent.run(frames, gate_echo=False, turn_by_turn=not options.realtime)
        return
    from assistant.audio.capture import MicCapture, MicError

    try:
        device = parse_device(options.settings.listen.input_device)
        mic = await stack.enter_async_context(MicCapture(device, frame_ms=frame_ms))
        await agent.run(mic, gate_echo=True)
    except MicError as exc:
        raise ListenError(str(exc)) from None


async def _load_worker(settings: Settings, script: Any) -> Any:
    """Load the model (or connect to its server) in a daemon thread: Ctrl-C during a long load
    exits without waiting."""
    from assistant.audio.closing import in_daemon_thread
    from assistant.model.checkpoint import resolve_checkpoint
    from assistant.testing.forced import load_scripted

    def load() -> Any:
        model = settings.model
        if model.backend == "local":
            # Before the slow import of the model's classes: a wrong --model fails at once.
            model = model.model_copy(update={"id": str(resolve_checkpoint(model.id))})
        return load_scripted(script, model)

    try:
        return await in_daemon_thread(load, name="load-model")
    except ValueError as exc:
        hint = "; run on the CPU with --device cpu (slower)" if "CUDA" in str(exc) else ""
        raise ListenError(f"{exc}{hint}") from None
