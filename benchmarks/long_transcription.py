"""Long recordings: transcription speed (x real time) by batch size, and memory over 2 hours.

    python benchmarks/long_transcription.py speed --minutes 5 --batches 1 8 16
    python benchmarks/long_transcription.py memory --hours 2

``speed`` transcribes a recording of real espeak-ng speech (varied sentences, pauses of 0.6 to
2.5 s) through ``LongTranscription`` once per batch size, on the tiny random model (built in a
temporary folder) unless ``--model`` names another, and prints seconds and x real time side
by side. On the tiny model every piece is forced to a 25-token transcript, so each batch size
does the same work; on a real checkpoint (``--model``, with a GPU) the model writes freely.

``memory`` writes a recording of ``--hours`` to a temporary WAV a block at a time, then reads
and cuts it into pieces in a fresh process and prints that process's peak RSS, with and
without the reading (the model is not involved: it holds at most two batches of pieces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def write_recording(path: Path, seconds: float) -> float:
    """Spoken sentences with pauses up to ``seconds``, written block by block; its length."""
    import numpy as np
    import soundfile as sf

    from tests.transcription.recordings import SENTENCES as TEXTS
    from tests.transcription.recordings import speech

    pauses_s = (0.6, 1.2, 0.8, 2.5)
    written = 0
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as out:
        number = 0
        while written < seconds * 16000:
            pcm = speech(TEXTS[number % len(TEXTS)])
            pause = np.zeros(int(pauses_s[number % len(pauses_s)] * 16000), dtype=np.int16)
            out.write(np.concatenate([pcm, pause]))
            written += len(pcm) + len(pause)
            number += 1
    return written / 16000


async def _transcribe(worker: Any, path: Path, batch: int) -> tuple[int, float]:
    from assistant.config import TranscriptionSettings
    from assistant.transcription import LongTranscription

    settings = TranscriptionSettings(batch_pieces=batch)
    started = time.perf_counter()
    job = LongTranscription(worker, path, language="en", settings=settings)
    pieces = 0
    async for _ in job.segments():
        pieces += 1
    return pieces, time.perf_counter() - started


def speed(args: argparse.Namespace) -> None:
    """Seconds and x real time for each batch size."""
    from assistant.config import ModelSettings
    from assistant.model.worker import ModelWorker
    from assistant.testing.forced import ForcedTokens

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        audio_s = write_recording(folder / "talk.wav", args.minutes * 60)
        model = args.model
        forced: list[int] | None = None
        if model is None:
            from assistant.testing.tiny_model import build_tiny_model

            model = str(build_tiny_model(folder / "tiny", "v7", "tiny", 0))
            forced = list(range(1100, 1125))  # 25 byte tokens, then </s>

        def factory(batch_size: int) -> list[Any]:
            return [ForcedTokens([forced])] if forced is not None else []

        options = ModelSettings(max_batch=max(args.batches))
        worker = ModelWorker.load(
            model, device=args.device, logits_processor_factory=factory, settings=options
        )
        try:
            print(f"recording: {audio_s / 60:.1f} min of speech with pauses; model: {model}")
            print(f"{'batch':>5} {'pieces':>6} {'seconds':>8} {'x real time':>12}")
            for batch in args.batches:
                pieces, seconds = asyncio.run(_transcribe(worker, folder / "talk.wav", batch))
                print(f"{batch:>5} {pieces:>6} {seconds:>8.1f} {audio_s / seconds:>12.1f}")
        finally:
            worker.close()


_CUT_ONLY = """
import json, resource, sys
from assistant.transcription import PieceCutter
from assistant.transcription.reader import AudioBlocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cutter, pieces, longest = PieceCutter(), 0, 0
with AudioBlocks(sys.argv[1]) as blocks:
    for block in blocks:
        for piece in cutter.feed(block):
            pieces += 1
            longest = max(longest, piece.end_ms - piece.start_ms)
pieces += len(cutter.finish())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kb": before, "after_kb": after, "pieces": pieces, "longest_ms": longest}))
"""


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of reading and cutting a recording of ``--hours``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        audio_s = write_recording(path, args.hours * 3600)
        size_mb = path.stat().st_size / 2**20
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", _CUT_ONLY, str(path)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        seconds = time.perf_counter() - started
        result = json.loads(out.stdout)
        print(f"recording: {audio_s / 3600:.2f} h, WAV {size_mb:.0f} MB")
        print(
            f"read + cut in {seconds:.1f} s: {result['pieces']} pieces (longest "
            f"{result['longest_ms'] / 1000:.1f} s); peak RSS {result['after_kb'] / 1024:.0f} MB "
            f"(after imports {result['before_kb'] / 1024:.0f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--model", help="checkpoint (default: the tiny random model)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=speed)
    m = sub.add_parser("memory")
    m.add_argument("--hours", type=float, default=2.0)
    m.set_defaults(run=memory)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
