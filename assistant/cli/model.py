"""Model commands: ``make-test-model`` and ``ask`` (``transcribe`` has its own module)."""

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
from assistant.cli.progress import progress_bar
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
        description="Send one user turn (the clips, then --text-file, then --text) to the model "
        "and stream the reply. The clips' token cost (375 per started 30 s) is checked against "
        "the model's context before any model work; a progress bar shows on a terminal while "
        "long audio is encoded. With --tools the model may call the tools of a tools.yaml: the "
        "calls are printed (with their arguments), not run.",
    )
    add_model_options(p)
    p.add_argument("audio", nargs="*", type=Path, help="audio files (WAV, FLAC, MP3, OGG)")
    p.add_argument("--text", help="question or instruction sent after the audio")
    p.add_argument(
        "--text-file", type=Path, help="a text (a transcript) sent after the audio, before --text"
    )
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    p.set_defaults(handler=_ask)


def _load_worker(args: argparse.Namespace, settings: Settings) -> Any:
    from assistant.model.factory import open_backend

    try:
        return open_backend(settings.model)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _ask(args: argparse.Namespace) -> int:
    import asyncio

    from mistral_common.protocol.instruct.chunk import TextChunk
    from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage

    from assistant.audio.io import AudioError, audio_chunk
    from assistant.model.audio_budget import AudioBudgetError, check_audio_budget
    from assistant.model.backend import DEFAULT_CONTEXT_TOKENS

    settings = settings_from_args(args)
    texts = [_read_text(args.text_file)] if args.text_file else []
    texts += [args.text] if args.text else []
    if not args.audio and not texts:
        raise CliError("ask needs audio files, --text or --text-file")
    params = settings.model.generation_params()
    durations_s = [_duration_s(path) for path in args.audio]
    try:  # no Voxtral holds more than DEFAULT_CONTEXT_TOKENS: too long is too long before loading
        check_audio_budget(
            durations_s, context_tokens=DEFAULT_CONTEXT_TOKENS, reply_tokens=params.max_new_tokens
        )
    except AudioBudgetError as exc:
        raise CliError(str(exc)) from None
    tools = load_registry(settings.tools_file).mistral_tools() if settings.tools_file else None
    worker = _load_worker(args, settings)
    try:
        text_only = [UserMessage(content=[TextChunk(text=t) for t in texts] or "")]
        check_audio_budget(
            durations_s,
            context_tokens=worker.context_tokens,
            reply_tokens=params.max_new_tokens,
            other_tokens=worker.count_tokens(text_only, tools),
        )
        content: list[Any] = [audio_chunk(path) for path in args.audio]
    except (AudioBudgetError, AudioError) as exc:
        worker.close()
        raise CliError(str(exc)) from None
    content += [TextChunk(text=t) for t in texts]
    messages: list[Any] = [UserMessage(content=content)]
    if settings.dialogue.instructions:
        messages.insert(0, SystemMessage(content=settings.dialogue.instructions))
    try:
        return asyncio.run(_stream_reply(worker, messages, tools, params, args))
    finally:
        worker.close()


async def _stream_reply(
    worker: Any, messages: list[Any], tools: Any, params: Any, args: argparse.Namespace
) -> int:
    """Print the reply as it comes; a progress bar while long audio is encoded."""
    import dataclasses
    import json

    from assistant.events import ErrorEvent, MalformedToolCall, ResponseDone, TextDelta, ToolCall

    status = 0
    show_bar = not args.no_progress and sum(_duration_s(p) for p in args.audio) > 30.0
    with progress_bar("encoding audio", 1, enabled=show_bar, unit=" windows") as update:

        def encoded(done: int, total: int) -> None:
            update(done, total=total, done=f"{done}/{total}")

        stream = worker.respond(messages, tools=tools, params=params, on_progress=encoded)
        async for event in stream:
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
            if isinstance(event, ResponseDone) and event.finish_reason == "length":
                print(
                    f"\nvoxtral-assistant: the reply was cut off at {params.max_new_tokens} "
                    "tokens (raise --max-new-tokens)",
                    file=sys.stderr,
                )
    if not args.json:
        print()
    return status


def _duration_s(path: Path) -> float:
    """A file's length from its header, without decoding it."""
    from assistant.audio.io import AudioError
    from assistant.transcription.reader import AudioBlocks

    try:
        with AudioBlocks(path) as blocks:
            return blocks.duration_s
    except AudioError as exc:
        raise CliError(str(exc)) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read --text-file {path}: {exc}") from None


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_make_test_model(sub)
    _add_ask(sub)
