"""The ``voxtral-assistant`` command.

Each subcommand is one ``_add_<name>`` function that declares its parser and sets ``handler``;
a handler takes the parsed arguments and returns the exit status. Heavy modules (torch,
transformers) are imported inside handlers so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from assistant import __version__
from assistant.checkpoint import ModelNotFoundError
from assistant.config import ConfigError, Settings, load_settings

log = logging.getLogger("assistant")


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _setup_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[max(-1, min(1, verbosity))]
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # Our own modules follow -v/-q; third-party libraries stay at WARNING unless -v.
    logging.getLogger("assistant").setLevel(level)
    if verbosity > 0:
        root.setLevel(logging.DEBUG)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="hub id or local folder (default: Voxtral-Mini-3B-2507)")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    group.add_argument(
        "--dtype", choices=["auto", "bfloat16", "float16", "float32"], help="default: auto"
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the command line's flags as the top layer."""
    overrides: dict[str, Any] = {}
    model = {
        k: getattr(args, a)
        for k, a in (("id", "model"), ("device", "device"), ("dtype", "dtype"))
        if getattr(args, a, None)
    }
    if model:
        overrides["model"] = model
    if getattr(args, "tools", None):
        overrides["tools_file"] = args.tools
    return load_settings(overrides, config_file=args.config)


# --- make-test-model -----------------------------------------------------------------------


def _add_make_test_model(sub: Any) -> None:
    p = sub.add_parser(
        "make-test-model",
        help="write a tiny random Voxtral checkpoint for offline tests",
        description="Write a tiny random Voxtral (model, processor, tekken.json) into DIR; "
        "transformers' from_pretrained loads it offline.",
    )
    p.add_argument("dir", type=Path, help="folder to write (created if missing)")
    p.add_argument("--tokenizer-version", choices=["v7", "v11", "v13"], default="v7")
    p.add_argument(
        "--vocabulary",
        choices=["tiny", "tekken"],
        default="tiny",
        help="tiny byte-level BPE (fast) or the real 150k Tekken vocabulary (realistic)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_make_test_model)


def _make_test_model(args: argparse.Namespace) -> int:
    from assistant.testing.tiny_model import build_tiny_model

    folder = build_tiny_model(args.dir, args.tokenizer_version, args.vocabulary, args.seed)
    kind = f"{args.tokenizer_version}, {args.vocabulary} vocabulary"
    print(f"wrote a tiny Voxtral ({kind}) to {folder}")
    return 0


# --- serve ---------------------------------------------------------------------------------


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the assistant over WebSocket (OpenAI Realtime protocol) and HTTP",
        description="Serve ws://HOST:PORT/v1/realtime (a subset of the OpenAI Realtime protocol), "
        "the browser page at /, POST /v1/respond for automations and GET /healthz. A token is "
        "required off loopback; prefer VOXTRAL_ASSISTANT_SERVER__TOKEN to --token (process "
        "lists show flags).",
    )
    _add_model_options(p)
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--token", help="bearer token clients must send")
    p.add_argument("--tools", type=Path, help="tools.yaml with the server-side tools")
    p.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="browser Origin allowed besides this server's own page (repeatable; * for any)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-sessions", type=int, help="concurrent WebSocket sessions (16)")
    limits.add_argument(
        "--max-buffered-audio-s", type=float, default=300.0, help="uncommitted audio per session"
    )
    limits.add_argument(
        "--idle-timeout-s", type=float, default=600.0, help="close silent connections after this"
    )
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from assistant.config import ServerSettings

    base = settings_from_args(args)
    flags = {
        "host": args.host,
        "port": args.port,
        "token": args.token,
        "allowed_origins": args.allowed_origin,
        "max_sessions": args.max_sessions,
    }
    try:
        server_settings = ServerSettings.model_validate(
            {**base.server.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
        )
    except ValidationError as exc:
        # Never echo a rejected value: it may be the token.
        raise CliError(
            "; ".join(
                f"server.{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    settings = base.model_copy(update={"server": server_settings})

    from assistant.tools import ToolsFileError
    from assistant.ws_server import ServeError, run_server

    try:
        asyncio.run(
            run_server(
                settings,
                max_buffered_audio_s=args.max_buffered_audio_s,
                idle_timeout_s=args.idle_timeout_s,
            )
        )
    except (ServeError, ToolsFileError) as exc:
        raise CliError(str(exc)) from None
    return 0


# --- tools ---------------------------------------------------------------------------------


def _add_tools(sub: Any) -> None:
    p = sub.add_parser(
        "tools",
        help="check tools.yaml, or run one tool by hand",
        description="Validate a tools.yaml (and the installed plugins) or call one tool with "
        "JSON arguments, exactly as the model's call would run.",
    )
    tools_sub = p.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    check = tools_sub.add_parser("check", help="validate a tools.yaml and list its tools")
    check.add_argument(
        "file", nargs="?", type=Path, help="default: settings' tools_file, or ./tools.yaml"
    )
    check.set_defaults(handler=_tools_check)
    call = tools_sub.add_parser("call", help="run one tool: tools call NAME '{\"arg\": 1}'")
    call.add_argument("name", help="tool name")
    call.add_argument("arguments", nargs="?", default="{}", help="JSON object (default {})")
    call.add_argument("--tools", type=Path, help="tools.yaml (default: settings, ./tools.yaml)")
    call.set_defaults(handler=_tools_call)


def _tools_file(args: argparse.Namespace, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    configured = load_settings(config_file=args.config).tools_file
    return configured or Path("tools.yaml")


def _load_registry(path: Path) -> Any:
    from assistant.tools import ToolsFileError, load_tools

    try:
        return load_tools(path)
    except ToolsFileError as exc:
        raise CliError(str(exc)) from None


def _tools_check(args: argparse.Namespace) -> int:
    import asyncio

    path = _tools_file(args, args.file)
    registry = _load_registry(path)
    print(f"{path}: {len(registry)} tool{'s' if len(registry) != 1 else ''}, all valid")
    width = max((len(spec.name) for spec in registry.specs), default=0)
    for spec in registry.specs:
        flags = " [confirm]" if spec.confirm else ""
        print(f"  {spec.name:<{width}}  {spec.kind:<6}  {spec.description}{flags}")
        print(f"  {'':<{width}}  {'':<6}  from {spec.source}, timeout {spec.timeout_s:g} s")
    asyncio.run(registry.aclose())
    return 0


def _tools_call(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import secrets
    import string

    from assistant.events import ToolCall

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        raise CliError(
            f'ARGUMENTS is not valid JSON ({exc}); quote it: \'{{"room": "kitchen"}}\''
        ) from None
    if not isinstance(arguments, dict):
        raise CliError("ARGUMENTS must be a JSON object, e.g. '{}'")
    registry = _load_registry(_tools_file(args, args.tools))
    if args.name not in registry:
        names = ", ".join(spec.name for spec in registry.specs)
        raise CliError(f"no tool named {args.name!r}; available: {names}")
    alphabet = string.ascii_letters + string.digits
    call = ToolCall(
        id="".join(secrets.choice(alphabet) for _ in range(9)), name=args.name, arguments=arguments
    )

    async def run() -> Any:
        try:
            return await registry.execute(call)
        finally:
            await registry.aclose()

    result = asyncio.run(run())
    print(result.content)
    return 0 if result.ok else 1


# --- devices -------------------------------------------------------------------------------


def _add_devices(sub: Any) -> None:
    p = sub.add_parser(
        "devices",
        help="list audio input devices",
        description="List the input devices PortAudio sees with their default sample rates; "
        "the default input is marked with *. A microphone is chosen by index or by name.",
    )
    p.set_defaults(handler=_devices)


def _devices(args: argparse.Namespace) -> int:
    from assistant.mic_capture import MicError, list_input_devices

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


# --- ask / transcribe ----------------------------------------------------------------------


def _add_ask(sub: Any) -> None:
    p = sub.add_parser(
        "ask",
        help="ask the model about audio clips and print its reply as it is generated",
        description="Send one user turn (the clips, then --text) to the model and stream the "
        "reply. With --tools the model may call the tools of a tools.yaml: the calls are "
        "printed (with their arguments), not run.",
    )
    _add_model_options(p)
    p.add_argument("audio", nargs="+", type=Path, help="audio files (WAV, FLAC, MP3, OGG)")
    p.add_argument("--text", help="question or instruction sent after the audio")
    p.add_argument("--tools", type=Path, help="tools.yaml whose tools the model may call")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--max-new-tokens", type=int, help="reply length limit (default 512)")
    p.set_defaults(handler=_ask)


def _load_worker(args: argparse.Namespace, settings: Settings) -> Any:
    from assistant.model_worker import ModelWorker

    try:
        return ModelWorker.from_settings(settings.model)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _ask(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import json

    from mistral_common.protocol.instruct.messages import SystemMessage, TextChunk, UserMessage

    from assistant.audio_io import AudioError, audio_chunk
    from assistant.events import ErrorEvent, MalformedToolCall, TextDelta, ToolCall
    from assistant.model_worker import GenerationParams

    settings = settings_from_args(args)
    try:
        content: list[Any] = [audio_chunk(path) for path in args.audio]
    except AudioError as exc:
        raise CliError(str(exc)) from None
    if args.text:
        content.append(TextChunk(text=args.text))
    messages: list[Any] = [UserMessage(content=content)]
    if settings.instructions:
        messages.insert(0, SystemMessage(content=settings.instructions))
    tools = _load_registry(settings.tools_file).mistral_tools() if settings.tools_file else None
    try:
        params = GenerationParams.from_settings(settings.model, args.max_new_tokens)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    worker = _load_worker(args, settings)

    async def run() -> int:
        status = 0
        async for event in worker.respond(messages, tools=tools, params=params):
            if isinstance(event, ErrorEvent):
                print(f"voxtral-assistant: {event.code}: {event.message}", file=sys.stderr)
                status = 1
            elif args.json:
                if not isinstance(event, (TextDelta, ToolCall)):
                    print(json.dumps(dataclasses.asdict(event), ensure_ascii=False))
            elif isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, ToolCall):
                print(f"\n[tool call {event.id}] {event.name}({event.arguments_json})", flush=True)
            elif isinstance(event, MalformedToolCall):
                print(f"\n[malformed tool call: {event.reason}] {event.raw_text}", flush=True)
        if not args.json:
            print()
        return status

    try:
        return asyncio.run(run())
    finally:
        worker.close()


def _add_transcribe(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe an audio file with Voxtral's transcription mode",
        description="Print what is said in AUDIO. Without --language the model detects the "
        "language; it is printed to stderr (or in --json).",
    )
    _add_model_options(p)
    p.add_argument("audio", type=Path, help="audio file (WAV, FLAC, MP3, OGG)")
    p.add_argument("--language", help="ISO 639-1 code of the spoken language, e.g. en, fr")
    p.add_argument("--json", action="store_true", help='print {"text": ..., "language": ...}')
    p.set_defaults(handler=_transcribe)


def _transcribe(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from assistant.audio_io import AudioError, load_audio
    from assistant.model_worker import ModelError

    if args.language is not None and not (len(args.language) == 2 and args.language.isalpha()):
        raise CliError(f"--language must be a two-letter ISO 639-1 code, not {args.language!r}")
    settings = settings_from_args(args)
    try:
        audio = load_audio(args.audio)
    except AudioError as exc:
        raise CliError(str(exc)) from None
    worker = _load_worker(args, settings)
    try:
        result = asyncio.run(worker.transcribe(audio, language=args.language))
    except ModelError as exc:
        raise CliError(str(exc)) from None
    finally:
        worker.close()
    if args.json:
        print(json.dumps({"text": result.text, "language": result.language}, ensure_ascii=False))
    else:
        if result.language and not args.language:
            print(f"language: {result.language}", file=sys.stderr)
        print(result.text)
    return 0


# --- listen --------------------------------------------------------------------------------


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
    from assistant.listen import ListenError, ListenOptions, parse_device, run_listen

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


# --- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="voxtral-assistant",
        description="Real-time voice assistant with function calling on Mistral's Voxtral.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_make_test_model,
        _add_serve,
        _add_tools,
        _add_devices,
        _add_ask,
        _add_transcribe,
        _add_listen,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxtral-assistant`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - args.quiet)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except (CliError, ConfigError, ModelNotFoundError) as exc:
        print(f"voxtral-assistant: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
