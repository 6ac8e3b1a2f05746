"""How soon the VAD hears that speech has ended, with and without ``vad.quiet_db``.

Each of the 16 commands of ``model_bench.SENTENCES`` is spoken by espeak-ng, cut to its sounding
part, laid out with a second of silence before and 1.5 s after, over white noise at several
levels, and fed to ``VadSegmenter`` (webrtcvad, the defaults, 500 ms hangover) in 20 ms chunks.
Per command and setting: stream time from the true end of speech to the first
``SpeechEndLikely`` after it (when a preemptive turn can start), to ``SpeechStopped`` (the
commit), and how many ``SpeechEndLikely`` came inside the speech (each one a speculation
started and discarded). Stream time only: no clock, no load sensitivity.

Run: ``python benchmarks/vad_end.py`` (prints a table, writes ``benchmarks/out/vad_end.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from model_bench import SENTENCES, percentile, write_json

from assistant.audio.vad import VadSegmenter
from assistant.events import SAMPLE_RATE_HZ, SpeechEndLikely, SpeechStopped
from assistant.testing.speech import sounding, synthesize

CHUNK_SAMPLES = SAMPLE_RATE_HZ // 50
NOISE_DBFS = (-70.0, -55.0, -45.0, -35.0)
QUIET_DB = (None, 35.0)


def track(speech: np.ndarray, noise_dbfs: float, seed: int) -> tuple[np.ndarray, int]:
    """The command between silences over white noise; and the sample where its speech ends."""
    before, after = SAMPLE_RATE_HZ, SAMPLE_RATE_HZ * 3 // 2
    pcm = np.concatenate([np.zeros(before), speech.astype(np.float64), np.zeros(after)])
    rms = 32767.0 * 10.0 ** (noise_dbfs / 20.0)
    pcm += np.random.default_rng(seed).standard_normal(len(pcm)) * rms
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16), before + len(speech)


def measure(pcm: np.ndarray, end: int, quiet_db: float | None) -> dict[str, Any]:
    """Milliseconds of stream from the end of speech to the hint and to the stop."""
    segmenter = VadSegmenter(quiet_db=quiet_db)
    hint_ms = stop_ms = None
    inside = 0
    for offset in range(0, len(pcm), CHUNK_SAMPLES):
        for event in segmenter.process(pcm[offset : offset + CHUNK_SAMPLES]):
            at = (offset + CHUNK_SAMPLES - end) * 1000 // SAMPLE_RATE_HZ
            if isinstance(event, SpeechEndLikely):
                if at < 0:
                    inside += 1
                else:
                    hint_ms = at if hint_ms is None else hint_ms
            elif isinstance(event, SpeechStopped) and at >= 0 and stop_ms is None:
                stop_ms = at
    return {"hint_ms": hint_ms, "stop_ms": stop_ms, "hints_inside": inside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="where to write the figures (default out/)")
    args = parser.parse_args()
    clips = [sounding(synthesize(text)) for text in SENTENCES]
    figures: dict[str, Any] = {"commands": len(clips), "runs": []}
    print(f"{len(clips)} espeak-ng commands, webrtcvad defaults, 500 ms hangover; stream time")
    print(
        f"{'noise':>9} | {'quiet_db':>8} | {'end -> hint p50/max':>20} | "
        f"{'end -> stop p50/max':>20} | hints inside speech"
    )
    for noise_dbfs in NOISE_DBFS:
        for quiet_db in QUIET_DB:
            rows = [
                measure(*track(clip, noise_dbfs, seed), quiet_db) for seed, clip in enumerate(clips)
            ]
            hints = [r["hint_ms"] for r in rows if r["hint_ms"] is not None]
            stops = [r["stop_ms"] for r in rows if r["stop_ms"] is not None]
            run = {
                "noise_dbfs": noise_dbfs,
                "quiet_db": quiet_db,
                "hint_ms": {"p50": percentile(hints, 50), "max": max(hints)},
                "stop_ms": {"p50": percentile(stops, 50), "max": max(stops)},
                "hints_inside": sum(r["hints_inside"] for r in rows),
                "missed": len(rows) - len(stops),
            }
            figures["runs"].append(run)
            print(
                f"{noise_dbfs:>5.0f} dBFS | {quiet_db or 'none':>8} | "
                f"{run['hint_ms']['p50']:>9.0f} / {run['hint_ms']['max']:>5} ms | "
                f"{run['stop_ms']['p50']:>9.0f} / {run['stop_ms']['max']:>5} ms | "
                f"{run['hints_inside']}" + (f" ({run['missed']} missed)" if run["missed"] else "")
            )
    print(f"figures written to {write_json('vad_end', args.json, figures)}")


if __name__ == "__main__":
    main()
