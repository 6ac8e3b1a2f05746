"""Scale-out: N conversations through ``serve --backend vllm`` vs the in-process model.

Builds the tiny Voxtral (transformers' and Mistral's formats, the same weights), then, one
backend after the other so that they never share the CPU:

1. ``voxtral-assistant serve`` with the model in process (float32 on the CPU);
2. the CPU build of vLLM serving the same weights (``VOXTRAL_TEST_VLLM_PYTHON`` or
   ``/work/vllm-venv``, as the tests find it) and ``serve --backend vllm --model-url`` on it.

For each N (1, 2, 4, 8 by default), N WebSocket clients each hold one conversation of
``--turns`` turns over ``/v1/realtime``: a spoken clip (espeak-ng, 24 kHz PCM16) as a
``conversation.item.create``, then ``response.create``. Every reply is forced to the same text
(``--forced-replies``, the same tokens on both backends) so both decode the same number of
tokens. Reported per backend and N: time to first token (``response.create`` sent to the first
``response.output_text.delta``) p50 / p95, turns per second and generated tokens per second over
the whole run of N conversations.

The tiny model makes the model's own compute negligible: what is measured is each path's
overhead and how it behaves under concurrency, on this machine. Absolute times say nothing
about a real GPU deployment (see the README's *Scaling out*).

Run: ``python benchmarks/scale_out.py [--conversations 1 2 4 8] [--turns 3]`` (prints a table,
writes JSON to ``benchmarks/out/scale_out.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.testing.mistral_format import build_tiny_mistral_model
from assistant.testing.speech import synthesize
from tests.support.vllm_server import VllmServer, vllm_python

RATE_HZ = 24_000
REPLY = "The kitchen light is on now and the oven is warming up for you."


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(port: int, process: asyncio.subprocess.Process, timeout_s: float) -> None:
    """Wait until ``GET /healthz`` answers 200 (or the process dies)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"serve exited with status {process.returncode}")
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        await asyncio.sleep(0.3)
    raise RuntimeError("serve did not start")


@contextlib.asynccontextmanager
async def serve(args: list[str], replies: Path, log: Path) -> AsyncIterator[int]:
    """``voxtral-assistant serve`` with ``args`` on a free port; yields the port."""
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VOXTRAL_ASSISTANT_MODEL__TEMPERATURE": "0",
        "VOXTRAL_ASSISTANT_MODEL__MAX_NEW_TOKENS": "64",
    }
    command = ["-m", "assistant", "-q", "serve", "--port", str(port), *args]
    command += ["--forced-replies", str(replies), "--max-sessions", "64"]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, env=env, stdout=out, stderr=out
        )
        try:
            await wait_healthy(port, process, 180.0)
            yield port
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 60)


async def conversation(url: str, clip_b64: str, turns: int) -> list[dict[str, float]]:
    """One client: ``turns`` spoken turns; the figures of each."""
    out = []
    async with connect(url, max_size=None) as ws:
        session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        for _ in range(turns):
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": clip_b64}],
            }
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "response.create"}))
            first: float | None = None
            while True:
                event = json.loads(await ws.recv())
                if event["type"] == "response.output_text.delta" and first is None:
                    first = time.perf_counter()
                elif event["type"] == "error":
                    raise RuntimeError(event["error"]["message"])
                elif event["type"] == "response.done":
                    response = event["response"]
                    if response["status"] != "completed":
                        raise RuntimeError(f"response {response['status']}")
                    out.append(
                        {
                            "ttft_s": (first or time.perf_counter()) - sent,
                            "turn_s": time.perf_counter() - sent,
                            "tokens": float(response["usage"]["output_tokens"]),
                        }
                    )
                    break
    return out


async def measure(port: int, clip_b64: str, n: int, turns: int) -> dict[str, Any]:
    """N concurrent conversations; percentiles and throughput."""
    url = f"ws://127.0.0.1:{port}/v1/realtime"
    started = time.perf_counter()
    results = await asyncio.gather(*(conversation(url, clip_b64, turns) for _ in range(n)))
    wall_s = time.perf_counter() - started
    turns_done = [t for r in results for t in r]
    ttft_ms = np.array([t["ttft_s"] for t in turns_done]) * 1000
    return {
        "conversations": n,
        "turns": len(turns_done),
        "ttft_p50_ms": round(float(np.percentile(ttft_ms, 50)), 1),
        "ttft_p95_ms": round(float(np.percentile(ttft_ms, 95)), 1),
        "turns_per_s": round(len(turns_done) / wall_s, 2),
        "tokens_per_s": round(sum(t["tokens"] for t in turns_done) / wall_s, 1),
    }


async def run_backend(
    name: str, serve_args: list[str], replies: Path, clip_b64: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """All N for one backend (after one warm-up turn)."""
    rows = []
    async with serve(serve_args, replies, Path(args.log_dir) / f"serve-{name}.log") as port:
        await measure(port, clip_b64, 1, 1)
        for n in args.conversations:
            row = {"backend": name, **await measure(port, clip_b64, n, args.turns)}
            print(_line(row), flush=True)
            rows.append(row)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['backend']:8} N={row['conversations']:<3} turns={row['turns']:<4} "
        f"ttft p50 {row['ttft_p50_ms']:8.1f} ms  p95 {row['ttft_p95_ms']:8.1f} ms  "
        f"{row['turns_per_s']:6.2f} turns/s  {row['tokens_per_s']:7.1f} tokens/s"
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run both backends; return the figures."""
    python = vllm_python()
    if python is None:
        raise SystemExit("no vLLM: set VOXTRAL_TEST_VLLM_PYTHON (see .ci/vllm-constraints.txt)")
    speech = synthesize("Turn on the kitchen light and preheat the oven please.")
    pcm = np.asarray(soxr.resample(speech, 16_000, RATE_HZ), dtype=np.int16)
    clip_b64 = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    total = 1 + sum(args.conversations) * args.turns
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_mistral_model(Path(tmp) / "tiny")
        replies = Path(tmp) / "replies.json"
        replies.write_text(json.dumps({"replies": [{"text": REPLY}] * total}))
        rows = await run_backend(
            "local",
            ["--model", str(folder), "--device", "cpu", "--dtype", "float32"],
            replies,
            clip_b64,
            args,
        )
        with VllmServer(folder, python) as server:
            print(f"vLLM started in {server.startup_s:.0f} s", flush=True)
            remote = ["--model", str(folder), "--backend", "vllm", "--model-url", server.base_url]
            rows += await run_backend("vllm", remote, replies, clip_b64, args)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
        "model": "tiny random Voxtral (hidden 64, float32), forced replies",
        "turns_per_conversation": args.turns,
        "rows": rows,
    }


def main() -> None:
    """Parse arguments, run, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--log-dir", default=tempfile.gettempdir())
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "out" / "scale_out.json"
    )
    args = parser.parse_args()
    figures = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
