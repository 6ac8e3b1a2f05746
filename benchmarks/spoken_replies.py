"""Spoken replies over /v1/realtime: how soon the audio starts, and what speaking sessions cost
the others.

Starts a server in a child process (loopback, the tiny test model made to say ``REPLY``, a
12-sentence answer of about 35 s of speech, to every request), then measures from a second
process:

- first audio: over ``--runs`` fresh sessions asking for audio, the time from
  ``response.create`` to the first ``response.output_audio_transcript.delta`` and the first
  ``response.output_audio.delta``, next to the first ``response.output_text.delta`` of the
  same reply asked for as text (the model's part); and the time until 10 s of audio were sent
  (faster than real time, up to ``server.audio_lead_s``);
- other sessions: one client streams speech in real time with server VAD (as
  ``ws_load.py``) and times its VAD events, first alone, then while ``--speakers`` sessions ask
  for spoken replies back to back (every reply synthesized on its session's thread).

Run: ``python benchmarks/spoken_replies.py [--runs 5] [--speakers 8] [--seconds 20]`` (prints
figures, writes JSON to ``benchmarks/out/spoken_replies.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import connect

from assistant.config import VadSettings
from assistant.testing.speech import synthesize
from assistant.testing.tiny_model import build_tiny_model

# ws_load.py is a sibling script, not a package: its listener and replay are reused as they are.
sys.path.insert(0, str(Path(__file__).parent))
from ws_load import (
    RATE_HZ,
    client_audio,
    expected_events,
    free_port,
    run_client,
    wait_for_server,
)

REPLY = " ".join(
    [
        "The kitchen lights are now on and the oven is warming up.",
        "I lowered the blinds in the living room as you asked.",
        "The front door is locked and the alarm is set for the night.",
        "Tomorrow will be mostly sunny with a light breeze from the west.",
        "The high will be twenty-one degrees and the low twelve.",
        "Your first meeting is at nine thirty in the small room.",
        "The train to Lyon leaves at ten past eleven from platform four.",
        "I added milk, eggs and flour to the shopping list.",
        "The washing machine will be done in about forty minutes.",
        "Your sister called this afternoon and will call again tomorrow.",
        "The living room is at twenty degrees and the bedroom at eighteen.",
        "Is there anything else you would like me to do tonight?",
    ]
)


def serve_child(port: int, model: str) -> None:
    """The server process: the tiny model says ``REPLY`` to every chat request."""
    from assistant.config import ServerSettings
    from assistant.model.worker import ModelWorker
    from assistant.server.assistant_server import AssistantServer
    from assistant.server.wiring import serve_until_signalled
    from assistant.testing.forced import ScriptedReplies

    script = ScriptedReplies(default_reply=REPLY, default_transcript="hello")
    worker = ModelWorker.load(
        model, device="cpu", logits_processor_factory=lambda n: script.logits_processors(n)
    )
    script.bind(worker.tokenizer)
    settings = ServerSettings(port=port, max_sessions=128)
    try:
        asyncio.run(serve_until_signalled(AssistantServer(worker, settings=settings)))
    finally:
        worker.close()


def _session(speak: bool) -> str:
    body = {
        "type": "realtime",
        "output_modalities": ["audio" if speak else "text"],
        "audio": {"input": {"turn_detection": None}},
    }
    return json.dumps({"type": "session.update", "session": body})


ASK = json.dumps(
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What is new?"}],
        },
    }
)


async def one_reply(url: str, speak: bool) -> dict[str, float]:
    """Ask once; the times (ms from response.create) of the first text, transcript and audio,
    of 10 s of audio sent, and of response.done."""
    times: dict[str, float] = {}
    audio_samples = 0
    text = ""
    first_sentence = REPLY[: REPLY.index(".") + 2]  # with the character that ends it
    async with connect(url, max_size=None) as ws:
        await ws.send(_session(speak))
        while json.loads(await ws.recv())["type"] != "session.updated":
            pass
        await ws.send(ASK)
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "response.create"}))
        async for message in ws:
            event = json.loads(message)
            at_ms = (time.perf_counter() - started) * 1000
            kind = event["type"]
            if kind in (
                "response.output_text.delta",
                "response.output_audio_transcript.delta",
                "response.output_audio.delta",
            ):
                times.setdefault(kind.split(".", 1)[1], at_ms)
            if kind == "response.output_text.delta":
                text += event["delta"]
                if text.startswith(first_sentence):
                    times.setdefault("first sentence complete", at_ms)
            if kind == "response.output_audio.delta":
                audio_samples += len(base64.b64decode(event["delta"])) // 2
                if audio_samples >= 10 * RATE_HZ:
                    times.setdefault("10 s of audio sent", at_ms)
            elif kind == "response.done":
                times["response.done"] = at_ms
                times["audio_s"] = audio_samples / RATE_HZ
                return times
    raise RuntimeError("the connection closed before response.done")


async def speak_forever(url: str, stop: asyncio.Event, audio_s: list[float]) -> None:
    """Ask for spoken replies back to back (reading every event) until ``stop``; add the
    seconds of audio received to ``audio_s[0]``."""
    async with connect(url, max_size=None) as ws:
        await ws.send(_session(True))
        while not stop.is_set():
            await ws.send(ASK)
            await ws.send(json.dumps({"type": "response.create"}))
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "response.output_audio.delta":
                    audio_s[0] += len(base64.b64decode(event["delta"])) / 2 / RATE_HZ
                elif event["type"] == "response.done":
                    break


async def vad_delays(url: str, seconds: float, speakers: int) -> dict[str, Any]:
    """One real-time listener's VAD event delays while ``speakers`` sessions speak."""
    speech = synthesize("Turn on the kitchen lights and set a timer for ten minutes.")
    speech = np.asarray(soxr.resample(speech, 16_000, RATE_HZ), dtype=np.int16)
    audio = client_audio(speech, seconds, phase_s=0.0)
    expected = expected_events(audio, VadSettings())
    stop = asyncio.Event()
    audio_s = [0.0]
    talkers = [
        asyncio.create_task(speak_forever(url, stop, audio_s), name=f"speaker-{i}")
        for i in range(speakers)
    ]
    await asyncio.sleep(2.0 if speakers else 0.0)  # the speakers are under way
    result = await run_client(url, audio, expected, time.perf_counter() + 0.5)
    stop.set()
    for task in talkers:
        task.cancel()
    await asyncio.gather(*talkers, return_exceptions=True)
    delays = np.array(result.delays_ms)
    return {
        "speaking sessions": speakers,
        "speech sent to them meanwhile s": round(audio_s[0], 1),
        "VAD events": int(delays.size),
        "p50 ms": round(float(np.percentile(delays, 50)), 1) if delays.size else None,
        "p99 ms": round(float(np.percentile(delays, 99)), 1) if delays.size else None,
        "max ms": round(float(delays.max()), 1) if delays.size else None,
        "missing or shifted": result.missing_or_shifted,
        "errors": len(result.errors),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, run both measurements, stop the server; return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", "v7", "tiny", 0)
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        server = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--child", str(port), str(model), env=env
        )
        try:
            await wait_for_server(port)
            url = f"ws://127.0.0.1:{port}/v1/realtime"
            text = [await one_reply(url, speak=False) for _ in range(args.runs)]
            spoken = [await one_reply(url, speak=True) for _ in range(args.runs)]
            isolation = [
                await vad_delays(url, args.seconds, 0),
                await vad_delays(url, args.seconds, args.speakers),
            ]
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 30)

    def median(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(row[key] for row in rows), 1)

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "runs": args.runs,
        "reply audio s": median(spoken, "audio_s"),
        "first text delta ms (text reply)": median(text, "output_text.delta"),
        "first sentence complete ms (text reply)": median(text, "first sentence complete"),
        "first transcript delta ms (spoken)": median(spoken, "output_audio_transcript.delta"),
        "first audio delta ms (spoken)": median(spoken, "output_audio.delta"),
        "10 s of audio sent ms (spoken)": median(spoken, "10 s of audio sent"),
        "response.done ms (text reply)": median(text, "response.done"),
        "response.done ms (spoken)": median(spoken, "response.done"),
        "listener beside speaking sessions": isolation,
    }


def main() -> None:
    """Parse arguments, run, print and save the figures."""
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        serve_child(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "out" / "spoken_replies.json"
    )
    args = parser.parse_args()
    figures = asyncio.run(main_async(args))
    for key, value in figures.items():
        if isinstance(value, list):
            for row in value:
                print(f"{key}: {row}")
        else:
            print(f"{key:40} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
