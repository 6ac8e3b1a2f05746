"""Load test of /v1/realtime: N clients stream speech in real time with server VAD.

Starts ``voxtral-assistant serve`` on a tiny random model (loopback only; no model response
is asked for: ``create_response`` is false), then N concurrent clients each stream a 24 kHz
PCM16 loop of espeak-ng speech and silence in 20 ms ``input_audio_buffer.append`` events,
paced in real time, for ``--seconds``.

Each client replays its own audio through the same resampler and ``VadSegmenter`` the server
uses, so it knows which chunk makes each VAD event possible and which ``audio_start_ms`` /
``audio_end_ms`` it must carry. Reported:

- VAD event delay: arrival of the event minus the sending of the chunk that triggered it
  (p50 / p99 / max, milliseconds);
- dropped audio: events missing or with a different audio position than the replay predicts
  (any lost or reordered chunk shifts them), plus ``error`` events.

Run: ``python benchmarks/ws_load.py --clients 50 --seconds 30`` (prints figures, writes JSON to
``benchmarks/out/ws_load.json``); ``--vad-backend silero`` measures Silero instead of webrtcvad.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
from websockets.asyncio.client import connect

from assistant import events as ev
from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.testing.speech import synthesize
from assistant.testing.tiny_model import build_tiny_model

RATE_HZ = 24_000
CHUNK_MS = 20
CHUNK_SAMPLES = RATE_HZ * CHUNK_MS // 1000
VAD_EVENTS = ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped")


def client_audio(speech: np.ndarray, seconds: float, phase_s: float) -> np.ndarray:
    """``speech`` then silence, looped to ``seconds`` at 24 kHz, shifted by ``phase_s``."""
    period = np.concatenate([speech, np.zeros(int(4.0 * RATE_HZ), dtype=np.int16)])
    lead = np.zeros(int(phase_s * RATE_HZ), dtype=np.int16)
    loop = np.concatenate([lead, *([period] * (int(seconds * RATE_HZ) // len(period) + 1))])
    total = int(seconds * RATE_HZ) // CHUNK_SAMPLES * CHUNK_SAMPLES
    return loop[:total]


def expected_events(audio: np.ndarray, vad: VadSettings) -> list[tuple[str, int, int]]:
    """(event type, audio ms, index of the triggering chunk), as the server must produce them."""
    resampler = soxr.ResampleStream(RATE_HZ, ev.SAMPLE_RATE_HZ, 1, dtype="int16")
    segmenter = VadSegmenter(vad)
    out = []
    for index in range(len(audio) // CHUNK_SAMPLES):
        chunk = audio[index * CHUNK_SAMPLES : (index + 1) * CHUNK_SAMPLES]
        pcm = np.asarray(resampler.resample_chunk(chunk), dtype=np.int16)
        for event in segmenter.process(pcm):
            if isinstance(event, ev.SpeechStarted):
                out.append((VAD_EVENTS[0], event.start_ms, index))
            elif isinstance(event, ev.SpeechStopped):
                out.append((VAD_EVENTS[1], event.end_ms, index))
    return out


@dataclass
class ClientResult:
    """What one client saw."""

    delays_ms: list[float] = field(default_factory=list)
    missing_or_shifted: int = 0
    errors: list[str] = field(default_factory=list)
    late_chunks: int = 0
    """Chunks the client itself sent more than one chunk period late (client overload)."""


async def run_client(
    url: str, audio: np.ndarray, expected: list[tuple[str, int, int]], start_at: float
) -> ClientResult:
    """Stream ``audio`` in real time from ``start_at`` and time the VAD events."""
    result = ClientResult()
    sent_at: list[float] = []
    received: list[tuple[str, int, float]] = []
    async with connect(url, max_size=None) as ws:

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] in VAD_EVENTS:
                    at_ms = event.get("audio_start_ms", event.get("audio_end_ms"))
                    received.append((event["type"], at_ms, time.perf_counter()))
                elif event["type"] == "error":
                    result.errors.append(event["error"]["message"])

        receiver = asyncio.create_task(receive(), name="receive")
        session = {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE_HZ},
                    "turn_detection": {"type": "server_vad", "create_response": False},
                }
            },
        }
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        t0 = time.perf_counter()
        for index in range(len(audio) // CHUNK_SAMPLES):
            due = t0 + index * CHUNK_MS / 1000
            now = time.perf_counter()
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > CHUNK_MS / 1000:
                result.late_chunks += 1
            chunk = audio[index * CHUNK_SAMPLES : (index + 1) * CHUNK_SAMPLES]
            payload = base64.b64encode(chunk.astype("<i2").tobytes()).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": payload}))
            sent_at.append(time.perf_counter())
        await asyncio.sleep(1.0)
        receiver.cancel()
    for i, (kind, at_ms, chunk_index) in enumerate(expected):
        if i >= len(received) or received[i][:2] != (kind, at_ms):
            result.missing_or_shifted += len(expected) - i
            break
        result.delays_ms.append((received[i][2] - sent_at[chunk_index]) * 1000)
    return result


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_server(port: int, timeout_s: float = 120.0) -> None:
    """Wait until ``GET /healthz`` answers on ``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = await reader.readline()
        writer.close()
        if b" 200 " in status:
            return
    raise RuntimeError("the server did not start")


async def main_async(args: argparse.Namespace) -> dict:
    """Run the load test; return the figures."""
    speech = synthesize("Turn on the kitchen lights and set a timer for ten minutes.")
    speech = np.asarray(soxr.resample(speech, 16_000, RATE_HZ), dtype=np.int16)
    # Ten phases, so that the clients do not all speak at the same moment.
    audios = [client_audio(speech, args.seconds, phase_s=k * 0.37) for k in range(10)]
    vad = VadSettings(backend=args.vad_backend)
    streams = [(audio, expected_events(audio, vad)) for audio in audios]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", "v7", "tiny", 0)
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        env["VOXTRAL_ASSISTANT_VAD__BACKEND"] = args.vad_backend
        command = ["-m", "assistant", "-q", "serve", "--model", str(model), "--device", "cpu"]
        command += ["--port", str(port), "--max-sessions", str(args.clients)]
        server = await asyncio.create_subprocess_exec(sys.executable, *command, env=env)
        try:
            await wait_for_server(port)
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            start_at = time.perf_counter() + 2.0
            results = await asyncio.gather(
                *(
                    run_client(
                        url,
                        *streams[i % len(streams)],
                        start_at + i * CHUNK_MS / 1000 / args.clients,
                    )
                    for i in range(args.clients)
                )
            )
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 30)
    delays = np.array([d for r in results for d in r.delays_ms])
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "clients": args.clients,
        "seconds": args.seconds,
        "chunk_ms": CHUNK_MS,
        "input_rate_hz": RATE_HZ,
        "vad_backend": args.vad_backend,
        "vad_events": int(delays.size),
        "vad_delay_p50_ms": round(float(np.percentile(delays, 50)), 1) if delays.size else None,
        "vad_delay_p99_ms": round(float(np.percentile(delays, 99)), 1) if delays.size else None,
        "vad_delay_max_ms": round(float(delays.max()), 1) if delays.size else None,
        "events_missing_or_shifted": sum(r.missing_or_shifted for r in results),
        "error_events": sum(len(r.errors) for r in results),
        "client_late_chunks": sum(r.late_chunks for r in results),
    }


def main() -> None:
    """Parse arguments, run, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--vad-backend", choices=["webrtc", "silero"], default="webrtc")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "ws_load.json")
    args = parser.parse_args()
    figures = asyncio.run(main_async(args))
    for key, value in figures.items():
        print(f"{key:28} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
