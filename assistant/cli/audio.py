"""Audio commands: ``devices`` and the desktop agent ``listen``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from assistant.audio.wake import WAKE_WORDS
from assistant.cli.common import (
    CliError,
    add_instructions_option,
    add_model_options,
    setting_flag,
    settings_from_args,
)


def _add_devices(sub: Any) -> None:
    p = sub.add_parser(
        "devices",
        help="list audio input devices",
        description="List the input devices PortAudio sees with their default sample rates; "
        "the default input is marked with *. A microphone is chosen by index or by name.",
    )
    p.set_defaults(handler=_devices)


def _devices(args: argparse.Namespace) -> int:
    from assistant.audio.capture import MicError, list_input_devices

    try:
        devices = list_input_devices()
    except MicError as exc:
        raise CliError(str(exc)) from None
    if not devices:
        print("no input devices found (is a microphone connected and the sound server running?)")
        return 1
    for d in devices:
        mark = "*" if d.is_default else " "
        print(
            f"{mark} {d.index:>3}  {d.name}  ({d.host_api}, {d.max_input_channels} channels, "
            f"default {d.default_sample_rate_hz} Hz)"
        )
    return 0


def _add_listen(sub: Any) -> None:
    p = sub.add_parser(
        "listen",
        help="talk to the assistant: microphone, turn detection, replies on screen and spoken",
        description="The desktop voice agent: listens to the microphone (or --input FILE.wav), "
        "detects when you have finished a sentence, answers (running the tools of --tools; "
        "without it ./tools.yaml when present, else the built-in tools, plus installed "
        "plugins), and shows and speaks the reply. Echo: by default an echo canceller (WebRTC "
        "AEC3) removes the assistant's own voice from the microphone, so you can interrupt it "
        "on open speakers; with --echo-cancellation off (or where the canceller cannot load) "
        "it is half-duplex, it does not listen while it speaks (plus --echo-tail-ms), and "
        "--barge-in is for headphones only. With --wake-word it "
        "answers only after its wake word (then follow-ups for --follow-up-s). Ctrl-C quits.",
    )
    add_model_options(p)
    setting_flag(
        p,
        "--tools",
        setting="tools_file",
        type=Path,
        help="tools.yaml with the tools the assistant may call",
    )
    add_instructions_option(p)
    audio = p.add_argument_group("audio")
    setting_flag(
        audio,
        "--input-device",
        setting="listen.input_device",
        metavar="MIC",
        help="microphone: index or name from `voxtral-assistant devices` (default: the "
        "default input)",
    )
    audio.add_argument(
        "--input",
        type=Path,
        metavar="FILE",
        help="read this recording (WAV, FLAC, MP3, OGG) instead of the microphone",
    )
    audio.add_argument(
        "--fast",
        action="store_true",
        help="with --input: read the file as fast as possible, one turn at a time "
        "(default: at the pace of a microphone)",
    )
    setting_flag(
        audio,
        "--speak",
        setting="listen.speak",
        action=argparse.BooleanOptionalAction,
        help="say the replies with espeak-ng",
    )
    setting_flag(
        audio,
        "--output-device",
        setting="listen.output_device",
        metavar="SPEAKER",
        help="index or name (default: the default output)",
    )
    setting_flag(audio, "--voice", setting="speech.voice", help="espeak-ng voice")
    setting_flag(
        audio,
        "--words-per-minute",
        setting="speech.words_per_minute",
        type=int,
        help="speech rate",
    )
    setting_flag(
        audio,
        "--echo-cancellation",
        setting="listen.echo_cancellation",
        choices=["auto", "on", "off"],
        help="remove the assistant's voice from the microphone: auto (the default: whenever it "
        "speaks into a microphone; half-duplex where the canceller cannot load), on (refuse to "
        "start without it), off (half-duplex)",
    )
    setting_flag(
        audio,
        "--barge-in",
        setting="listen.barge_in",
        action=argparse.BooleanOptionalAction,
        help="let your speech interrupt the reply (default: exactly when echo cancellation "
        "runs); without echo cancellation ONLY with headphones, otherwise the assistant hears "
        "itself and interrupts itself",
    )
    setting_flag(
        audio,
        "--echo-tail-ms",
        setting="listen.echo_tail_ms",
        type=int,
        help="half-duplex: keep ignoring the microphone this long after speaking",
    )
    wake = p.add_argument_group("wake word")
    setting_flag(
        wake,
        "--wake-word",
        setting="listen.wake_word",
        choices=list(WAKE_WORDS),
        help="answer only after this wake word (Linux and Windows; not macOS)",
    )
    setting_flag(
        wake,
        "--follow-up-s",
        setting="listen.follow_up_s",
        type=float,
        help="after the wake word and after each reply, listen this long for a (follow-up) request",
    )
    setting_flag(
        wake,
        "--chime",
        setting="listen.chime",
        action="store_true",
        help="play a short tone when the wake word is heard",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--json", action="store_true", help="print one JSON event per line (for scripts)"
    )
    out.add_argument(
        "--plain",
        action="store_true",
        help="plain lines without control codes (the default when stdout is not a terminal)",
    )
    setting_flag(
        out,
        "--session-log",
        setting="dialogue.session_log_path",
        type=Path,
        help="append every turn to this JSONL file",
    )
    # Test aid (README, "Desktop voice agent"): force the tiny test model's replies.
    p.add_argument("--forced-replies", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(handler=_listen)


def _listen(args: argparse.Namespace) -> int:
    if args.fast and args.input is None:
        raise CliError("--fast applies to --input FILE only")
    from assistant.desktop.listen import ListenError, ListenOptions, run_listen

    options = ListenOptions(
        settings=settings_from_args(args),
        input_path=args.input,
        realtime=not args.fast,
        display="json" if args.json else "plain" if args.plain else "auto",
        forced_replies=args.forced_replies,
    )
    try:
        status = run_listen(options)
    except ListenError as exc:
        raise CliError(str(exc)) from None
    _exit_at_once(status)


def _exit_at_once(status: int) -> NoReturn:
    """End the ``listen`` process now, without the interpreter's teardown."""
    # run_listen has returned: the microphone and the speaker are closed, the session log is
    # finished and the model thread has stopped (or, after Ctrl-C during the load, the daemon
    # thread loading it is abandoned on purpose). What is left is the teardown of torch's and
    # transformers' modules, close to a second on a small machine, which would break "Ctrl-C
    # quits at once". os._exit skips it and also skips flushing, so flush here first. Only
    # this command does this; library code (run_listen included) always returns.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(status)


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_devices(sub)
    _add_listen(sub)
