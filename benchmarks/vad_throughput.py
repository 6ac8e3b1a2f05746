"""Throughput of the VAD segmenter on one CPU core: how much faster than real time it runs.

Builds a track of real espeak-ng speech (several voices and speeds) with pauses over a faint
noise bed, then runs ``VadSegmenter`` over it in 20 ms chunks, as a microphone or a WebSocket
client would deliver it, for each backend: webrtcvad (10, 20, 30 ms frames), Silero, and
webrtcvad fed 48 kHz float audio (so the soxr resampling is included). The process is pinned
to one core and torch to one thread. Goals (issue 4): webrtcvad >= 200x real time, Silero
>= 20x.

Run: ``python benchmarks/vad_throughput.py [--seconds 120] [--repeats 3]`` (prints figures,
writes JSON to ``benchmarks/out/vad_throughput.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

# Before anything imports torch, which reads it once.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import soxr

from assistant.audio.vad import VadSegmenter
from assistant.events import SAMPLE_RATE_HZ, Utterance
from assistant.testing.speech import synthesize

GOALS_X = {"webrtc": 200.0, "silero": 20.0}
PHRASES = [
    ("Turn on the kitchen lights please", "en-us", 160),
    ("What will the weather be like in Paris tomorrow", "en-gb", 130),
    ("Set a timer for ten minutes", "en-us+f3", 220),
    ("Play some jazz in the living room", "en-gb-scotland", 180),
    ("Remind me to call my mother tonight", "en-us+m3", 110),
]


def build_track(seconds: float, seed: int = 0) -> np.ndarray:
    """int16 16 kHz: phrases separated by 0.5-2 s pauses, over white noise at -55 dBFS."""
    rng = np.random.default_rng(seed)
    clips = [synthesize(t, voice=v, words_per_minute=w) for t, v, w in PHRASES]
    pieces: list[np.ndarray] = []
    total = 0
    target = round(seconds * SAMPLE_RATE_HZ)
    while total < target:
        pause = np.zeros(round(rng.uniform(0.5, 2.0) * SAMPLE_RATE_HZ), dtype=np.int16)
        clip = clips[len(pieces) // 2 % len(clips)]
        pieces += [pause, clip]
        total += len(pause) + len(clip)
    track = np.concatenate(pieces)[:target].astype(np.float64)
    track += rng.standard_normal(len(track)) * 32767 * 10 ** (-55 / 20)
    return np.clip(np.round(track), -32768, 32767).astype(np.int16)


def measure(
    segmenter: VadSegmenter, audio: np.ndarray, rate_hz: int, repeats: int
) -> tuple[float, int]:
    """Best wall time over ``repeats`` full passes in 20 ms chunks, and utterances found."""
    chunk = rate_hz // 50
    best_s = float("inf")
    found = 0
    for _ in range(repeats):
        segmenter.reset()
        started = time.perf_counter()
        events = []
        for offset in range(0, len(audio), chunk):
            events.extend(segmenter.process(audio[offset : offset + chunk], rate_hz))
        events.extend(segmenter.flush())
        best_s = min(best_s, time.perf_counter() - started)
        found = sum(isinstance(e, Utterance) for e in events)
    return best_s, found


def main() -> None:
    """Run every configuration, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="track length")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the best one counts")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import torch

    torch.set_num_threads(1)

    track = build_track(args.seconds)
    audio_s = len(track) / SAMPLE_RATE_HZ
    track_48k = soxr.resample(track.astype(np.float32) / 32768.0, SAMPLE_RATE_HZ, 48000)
    runs = [
        ("webrtc", "webrtc, 10 ms frames", {"frame_ms": 10}, track, SAMPLE_RATE_HZ),
        ("webrtc", "webrtc, 20 ms frames", {"frame_ms": 20}, track, SAMPLE_RATE_HZ),
        ("webrtc", "webrtc, 30 ms frames", {"frame_ms": 30}, track, SAMPLE_RATE_HZ),
        ("webrtc", "webrtc, 48 kHz float in", {}, track_48k, 48000),
        ("silero", "silero, 32 ms windows", {}, track, SAMPLE_RATE_HZ),
    ]
    results = []
    print(f"track: {audio_s:.0f} s of speech and pauses; 1 core, torch threads = 1")
    print(f"{'configuration':<26}{'x real time':>13}{'us / 20 ms':>12}{'utterances':>12}  goal")
    for backend, label, overrides, audio, rate_hz in runs:
        segmenter = VadSegmenter(backend=backend, **overrides)
        wall_s, found = measure(segmenter, audio, rate_hz, args.repeats)
        factor = audio_s / wall_s
        per_frame_us = wall_s / (audio_s * 50) * 1e6
        goal = GOALS_X[backend]
        verdict = f">= {goal:.0f}x {'met' if factor >= goal else 'NOT MET'}"
        print(f"{label:<26}{factor:>12.0f}x{per_frame_us:>12.1f}{found:>12}  {verdict}")
        results.append(
            {
                "configuration": label,
                "backend": backend,
                "input_rate_hz": rate_hz,
                "audio_s": audio_s,
                "wall_s": wall_s,
                "x_real_time": factor,
                "us_per_20ms": per_frame_us,
                "utterances": found,
                "goal_x": goal,
                "goal_met": factor >= goal,
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores_used": 1,
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
    path = args.out / "vad_throughput.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
