"""Decode speed of the worker: one stream, and batches of 1/4/16 conversations.

Each conversation is a short text prompt whose reply is forced to ``--tokens`` tokens. Decode
rate = tokens generated after the first one / time from first token to done. The
memory-bandwidth bound of one stream is (measured copy bandwidth) / (parameter bytes): each
decode step must read every weight once. Fractions of that bound mean something on a GPU; on a
CPU the tiny model is bound by per-step overheads, not by memory.

Run: ``python benchmarks/decode_throughput.py`` (``--size mini --device cuda`` on a GPU;
``--static-cache 4096 --compile inductor`` for the compiled decode step).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from model_bench import add_common_options, forced_reply, load, write_json


def copy_bandwidth_bytes_per_s(device: str, size_bytes: int = 1 << 28) -> float:
    """Measured device-memory copy bandwidth (read + write) in bytes per second."""
    import torch

    source = torch.empty(size_bytes // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    for _ in range(2):
        target.copy_(source)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    repeats = 10
    started = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * size_bytes * repeats / (time.perf_counter() - started)


async def batch_rate(worker: Any, script: Any, reply: list[int], batch: int) -> dict[str, float]:
    """Aggregate and per-stream decode tokens/s for ``batch`` conversations in one step."""
    from mistral_common.protocol.instruct.messages import UserMessage

    from assistant.config import GenerationParams
    from assistant.events import TextDelta

    for _ in range(batch):
        script.add(reply)
    conversations = [[UserMessage(content=f"Question number {i}?")] for i in range(batch)]
    params = GenerationParams(max_new_tokens=len(reply) + 1, temperature=0.0)
    streams = worker.respond_batch(conversations, params=params)
    firsts: list[float] = []
    for stream in streams:
        async for event in stream:
            if isinstance(event, TextDelta) and len(firsts) < batch:
                firsts.append(time.monotonic())
                break
    for stream in streams:
        await stream.done()
    done = time.monotonic()
    elapsed = done - min(firsts)
    per_stream = (len(reply) - 1) / elapsed
    return {
        "batch": batch,
        "tokens_per_s": per_stream * batch,
        "per_stream_tokens_per_s": per_stream,
    }


async def run(args: argparse.Namespace, loaded: Any) -> list[dict[str, float]]:
    """All batch sizes, after one warm-up."""
    from assistant.config import ModelSettings
    from assistant.model.worker import ModelWorker
    from assistant.testing.forced import ScriptedReplies

    script = ScriptedReplies()
    options = ModelSettings(
        prefix_reuse=False,
        static_cache_tokens=args.static_cache,
        compile_backend=args.compile,
    )
    worker = ModelWorker(
        loaded, logits_processor_factory=script.logits_processors, settings=options
    )
    reply = forced_reply(loaded.tokenizer, args.tokens)
    try:
        await batch_rate(worker, script, reply, 1)
        return [await batch_rate(worker, script, reply, b) for b in args.batches]
    finally:
        worker.close()


def main() -> None:
    """Parse options, measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--tokens", type=int, default=128, help="reply length per stream")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--static-cache", type=int, help="static KV cache positions")
    parser.add_argument("--compile", help="torch.compile backend (needs --static-cache)")
    args = parser.parse_args()

    loaded = load(args.size, args.device, args.dtype)
    rows = asyncio.run(run(args, loaded))
    bandwidth = copy_bandwidth_bytes_per_s(loaded.report.device)
    bound = bandwidth / loaded.report.parameter_bytes
    print(f"decode_throughput: size={args.size} device={loaded.report.device}")
    print(
        f"parameters {loaded.report.parameter_bytes / 1e9:.3f} GB, copy bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s, bandwidth bound {bound:.0f} tokens/s per stream"
    )
    print(f"{'batch':>5} {'tokens/s':>10} {'per stream':>11} {'of bound':>9}")
    for row in rows:
        row["fraction_of_bound"] = row["per_stream_tokens_per_s"] / bound
        per_stream = row["per_stream_tokens_per_s"]
        print(
            f"{row['batch']:>5} {row['tokens_per_s']:>10.1f} {per_stream:>11.1f}"
            f" {100 * row['fraction_of_bound']:>8.1f}%"
        )
    path = write_json(
        f"decode_throughput-{args.size}",
        args.json,
        {
            "size": args.size,
            "device": loaded.report.device,
            "dtype": loaded.report.dtype,
            "tokens": args.tokens,
            "static_cache": args.static_cache,
            "compile": args.compile,
            "parameter_bytes": loaded.report.parameter_bytes,
            "copy_bandwidth_bytes_per_s": bandwidth,
            "bandwidth_bound_tokens_per_s": bound,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
