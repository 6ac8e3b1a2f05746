"""Model commands: ``make-test-model``, ``ask`` and ``transcribe``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from assistant.cli.common import (
    CliError,
    add_instructions_option,
    add_model_options,
    load_registry,
    setting_flag,
    settings_from_args,
)
from assistant.config import Settings


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


def _add_ask(sub: Any) -> None:
    p = sub.add_parser(
        "ask",
        help="ask the model about audio clips and print its reply as it is generated",
        description="Send one user turn (the clips, then --text) to the model and stream the "
        "reply. With --tools the model may call the tools of a tools.yaml: the calls are "
        "printed (with their arguments), not run.",
    )
    add_model_options(p)
    p.add_argument("audio", nargs="+", type=Path, help="audio files (WAV, FLAC, MP3, OGG)")
    p.add_argument("--text", help="question or instruction sent after the audio")
    setting_flag(
        p,
        "--tools",
        setting="tools_file",
        type=Path,
        help="tools.yaml whose tools the model may call (default: none)",
    )
    add_instructions_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    setting_flag(
        p,
        "--max-new-tokens",
        setting="model.max_new_tokens",
        type=int,
        help="reply length limit",
    )
    p.set_defaults(handler=_ask)


def _load_worker(args: argparse.Namespace, settings: Settings) -> Any:
    from assistant.model.factory import open_backend

    try:
        return open_backend(settings.model)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _ask(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import json

    from mistral_common.protocol.instruct.chunk import TextChunk
    from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage

    from assistant.audio.io import AudioError, audio_chunk
    from assistant.events import ErrorEvent, MalformedToolCall, TextDelta, ToolCall

    settings = settings_from_args(args)
    try:
        content: list[Any] = [audio_chunk(path) for path in args.audio]
    except AudioError as exc:
        raise CliError(str(exc)) from None
    if args.text:
        content.append(TextChunk(text=args.text))
    messages: list[Any] = [UserMessage(content=content)]
    if settings.dialogue.instructions:
        messages.insert(0, SystemMessage(content=settings.dialogue.instructions))
    tools = load_registry(settings.tools_file).mistral_tools() if settings.tools_file else None
    params = settings.model.generation_params()
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
    add_model_options(p)
    p.add_argument("audio", type=Path, help="audio file (WAV, FLAC, MP3, OGG)")
    p.add_argument("--language", help="ISO 639-1 code of the spoken language, e.g. en, fr")
    p.add_argument("--json", action="store_true", help='print {"text": ..., "language": ...}')
    p.set_defaults(handler=_transcribe)


def _transcribe(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from assistant.audio.io import AudioError, load_audio
    from assistant.model.backend import ModelError

    language = _iso_639_1(args.language) if args.language is not None else None
    settings = settings_from_args(args)
    try:
        audio = load_audio(args.audio)
    except AudioError as exc:
        raise CliError(str(exc)) from None
    worker = _load_worker(args, settings)
    try:
        result = asyncio.run(worker.transcribe(audio, language=language))
    except ModelError as exc:
        raise CliError(str(exc)) from None
    finally:
        worker.close()
    if args.json:
        print(json.dumps({"text": result.text, "language": result.language}, ensure_ascii=False))
    else:
        if result.language and not language:
            print(f"language: {result.language}", file=sys.stderr)
        print(result.text)
    return 0


def _iso_639_1(code: str) -> str:
    """``code`` as the ISO 639-1 code mistral-common accepts (lower case), or a ``CliError``.

    The same check as the transcription request's, made before the model loads.
    """
    from pydantic import TypeAdapter, ValidationError
    from pydantic_extra_types.language_code import LanguageAlpha2

    try:
        return str(TypeAdapter(LanguageAlpha2).validate_python(code.lower()))
    except ValidationError:
        raise CliError(
            f"--language {code!r} is not an ISO 639-1 language code (two letters, like en or fr)"
        ) from None


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_make_test_model(sub)
    _add_ask(sub)
    _add_transcribe(sub)
