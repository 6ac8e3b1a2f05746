"""The ``transcribe`` command: a recording of any length, printed piece by piece."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from assistant.cli.common import CliError, add_model_options, setting_flag, settings_from_args
from assistant.cli.progress import progress_bar
from assistant.config import Settings, iso_639_1


def _add_transcribe(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe an audio file of any length with Voxtral's transcription mode",
        description="Print what is said in AUDIO, piece by piece as each is transcribed: the "
        "file is read a block at a time and cut at pauses into pieces of at most 30 s, which "
        "go to the model in batches. Timestamps are those of the pieces (no word timestamps). "
        "Without --language the model detects the language of each piece; the language of "
        "most of the speech is printed to stderr (and in the json format). A piece whose text "
        "reaches the token limit is marked '[cut off: ...]'. A progress bar shows on a "
        "terminal.",
    )
    add_model_options(p)
    p.add_argument("audio", type=Path, help="audio file (WAV, FLAC, MP3, OGG)")
    p.add_argument("--language", help="ISO 639-1 code of the spoken language, e.g. en, fr")
    p.add_argument(
        "--format",
        choices=["txt", "json", "srt", "vtt"],
        default=None,
        help="txt: one line per piece (default); json: segments with times and language, "
        "then the totals; srt / vtt: subtitles",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")
    setting_flag(
        p,
        "--max-piece-s",
        setting="transcription.max_piece_s",
        type=float,
        help="longest piece, 1 to 30 s",
    )
    setting_flag(
        p,
        "--batch-pieces",
        setting="transcription.batch_pieces",
        type=int,
        help="pieces per batched model step",
    )
    setting_flag(
        p,
        "--max-new-tokens",
        setting="transcription.max_new_tokens",
        type=int,
        help="token limit per piece",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    p.add_argument("--forced-replies", type=Path, help=argparse.SUPPRESS)
    p.set_defaults(handler=_transcribe)


def _transcribe(args: argparse.Namespace) -> int:
    import asyncio

    from assistant.audio.io import AudioError
    from assistant.model.backend import ModelError
    from assistant.transcription.reader import AudioBlocks

    language = _language(args.language)
    settings = settings_from_args(args)
    try:
        AudioBlocks(args.audio).close()  # an unreadable file fails before the model loads
    except AudioError as exc:
        raise CliError(str(exc)) from None
    worker = _load_worker(settings, args.forced_replies)
    try:
        return asyncio.run(_run(worker, args, settings, language))
    except (AudioError, ModelError) as exc:
        raise CliError(str(exc)) from None
    finally:
        worker.close()


async def _run(
    worker: Any, args: argparse.Namespace, settings: Settings, language: str | None
) -> int:
    from assistant.transcription import LongTranscription, SegmentWriter
    from assistant.transcription.formats import CUT_OFF_MARK

    writer = SegmentWriter("json" if args.json else (args.format or "txt"))
    job = LongTranscription(
        worker, args.audio, language=language, settings=settings.transcription, vad=settings.vad
    )
    progress = job.progress
    total_s = max(progress.duration_s, 0.001)
    with progress_bar(
        "transcribing", total_s, enabled=not args.no_progress, unit=" of the audio"
    ) as update:
        _write(writer.header())
        async for segment in job.segments():
            _write(writer.segment(segment))
            done = f"{_clock(progress.transcribed_s)} / {_clock(progress.duration_s)}"
            update(min(progress.transcribed_s, total_s), done=done)
        update(total_s, done=f"{_clock(progress.duration_s)} / {_clock(progress.duration_s)}")
    progress = job.progress
    _write(writer.footer(language=progress.language, duration_s=progress.duration_s))
    if progress.pieces == 0:
        print(f"voxtral-assistant: no speech found in {args.audio}", file=sys.stderr)
    elif not language and progress.language:
        print(f"language: {progress.language} (detected)", file=sys.stderr)
    if progress.cut_off:
        limit = settings.transcription.max_new_tokens
        print(
            f"voxtral-assistant: warning: {len(progress.cut_off)} of {progress.pieces} pieces "
            f"reached the {limit}-token limit; their text is cut off and marked "
            f"{CUT_OFF_MARK!r} (raise --max-new-tokens or lower --max-piece-s)",
            file=sys.stderr,
        )
    return 0


def _write(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _clock(seconds: float) -> str:
    from assistant.model.audio_budget import clock

    return clock(seconds)


def _load_worker(settings: Settings, forced_replies: Path | None) -> Any:
    """The model worker; with ``forced_replies`` (tests, demos) it says what the file says."""

    script = None
    if forced_replies is not None:
        from assistant.testing.forced import ForcedScriptError, ScriptedReplies

        try:
            script = ScriptedReplies.from_file(forced_replies)
        except ForcedScriptError as exc:
            raise CliError(str(exc)) from None
    from assistant.testing.forced import load_scripted

    try:
        return load_scripted(script, settings.model)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _language(code: str | None) -> str | None:
    """``--language``, checked before the model loads (one line, like every usage error)."""
    if code is None:
        return None
    try:
        return iso_639_1(code)
    except ValueError as exc:
        raise CliError(f"--language {exc}") from None


def add_commands(sub: Any) -> None:
    """Declare this module's subcommands on the top-level parser."""
    _add_transcribe(sub)
