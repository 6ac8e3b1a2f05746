"""Audio commands: ``devices`` and the desktop agent ``listen``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from assistant.cli.common import CliError, settings_from_args


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
        "detects when you have finished a sentence, answers (running the tools of --tools), "
        "and shows and speaks the reply. Echo: by default the agent is half-duplex, it does "
        "not listen while it speaks (plus --echo-tail-ms), so a loudspeaker's sound is never "
        "taken for you; --barge-in lets you interrupt it, but only use it with headphones or "
        "a microphone with an echo canceller (e.g. PipeWire/PulseAudio echo-cancel, a "
        "conference speakerphone). Ctrl-C quits.",
    )
    p.add_argument("--model", help="hub id or local folder (default: Voxtral-Mini-3B-2507)")
    p.add_argument(
        "--model-device", dest="device", help="where the model runs: auto (default), cpu, cuda"
    )
    p.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], help="default: auto"
    )
    p.add_argument("--tools", type=Path, help="tools.yaml with the tools the assistant may call")
    audio = p.add_argument_group("audio")
    audio.add_argument(
        "--device",
        dest="mic",
        metavar="MIC",
        help="microphone: index or name from `voxtral-assistant devices` (default input)",
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
    audio.add_argument(
        "--speak",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="say the replies with espeak-ng (default: --speak)",
    )
    audio.add_argument("--output-device", metavar="SPEAKER", help="index or name (default output)")
    audio.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us)")
    audio.add_argument("--words-per-minute", type=int, default=175, help="speech rate (175)")
    audio.add_argument(
        "--barge-in",
        action="store_true",
        help="let your speech interrupt the reply; ONLY with headphones or an echo canceller, "
        "otherwise the assistant hears itself and interrupts itself",
    )
    audio.add_argument(
        "--echo-tail-ms",
        type=int,
        default=400,
        help="half-duplex: keep ignoring the microphone this long after speaking (400)",
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
    out.add_argument("--session-log", type=Path, help="append every turn to this JSONL file")
    # Test aid (README, "Desktop voice agent"): force the tiny test model's replies.
    p.add_argument("--forced-replies", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(handler=_listen)


def _listen(args: argparse.Namespace) -> int:
    if args.fast and args.input is None:
        raise CliError("--fast applies to --input FILE only")
    if args.echo_tail_ms < 0:
        raise CliError("--echo-tail-ms must be 0 or more")
    from assistant.desktop.listen import ListenError, ListenOptions, parse_device, run_listen

    options = ListenOptions(
        settings=settings_from_args(args),
        mic=parse_device(args.mic),
        output_device=parse_device(args.output_device),
        input_path=args.input,
        realtime=not args.fast,
        speak=args.speak,
        voice=args.voice,
        words_per_minute=args.words_per_minute,
        barge_in=args.barge_in,
        echo_tail_ms=args.echo_tail_ms,
        display="json" if args.json else "plain" if args.plain else "auto",
        session_log=args.session_log,
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
