"""K conversations speaking every few seconds: p50/p95 time to first token.

Each conversation sends a new 3-5 s clip every ``--interval-s`` seconds (starts staggered at
random), keeps its history, and gets a forced reply of ``--reply-tokens`` tokens. Time to
first token runs from the clip being ready to the first text delta. Run once with batching
(requests that wait together share encoder and generate calls) and once strictly one by one
(``max_batch=1``) to show what batching buys.

Run: ``python benchmarks/concurrency.py --conversations 4`` (``--size mini --device cuda`` on a
GPU). Prints a table and writes ``benchmarks/out/concurrency-<size>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from model_bench import (
    add_common_options,
    forced_reply,
    load,
    percentile,
    spoken_clips,
    write_json,
)


async def speaker(
    worker: Any, script: Any, reply: list[int], clips: list[Any], name: str, args: Any
) -> list[float]:
    """One conversation: a clip every interval; its times to first token in ms."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage

    from assistant.audio.io import audio_chunk
    from assistant.config import GenerationParams
    from assistant.events import TextDelta

    params = GenerationParams(max_new_tokens=len(reply) + 1, temperature=0.0)
    text = worker.tokenizer.decode(reply[:-1])
    history: list[Any] = []
    times = []
    await asyncio.sleep(random.uniform(0, args.interval_s))
    for clip in clips:
        next_turn = time.monotonic() + args.interval_s
        script.add(reply)
        started = time.monotonic()
        history.append(UserMessage(content=[audio_chunk(clip)]))
        first = None
        async for event in worker.respond(history, params=params, conversation_id=name):
            if first is None and isinstance(event, TextDelta):
                first = time.monotonic()
        times.append(1000 * ((first or time.monotonic()) - started))
        history.append(AssistantMessage(content=text))
        await asyncio.sleep(max(0.0, next_turn - time.monotonic()))
    return times


async def run(loaded: Any, args: Any, max_batch: int) -> list[float]:
    """All conversations at once; every time to first token in ms."""
    from assistant.config import ModelSettings
    from assistant.model.worker import ModelWorker
    from assistant.testing.forced import ScriptedReplies

    script = ScriptedReplies()
    worker = ModelWorker(
        loaded,
        logits_processor_factory=script.logits_processors,
        settings=ModelSettings(max_batch=max_batch),
    )
    reply = forced_reply(loaded.tokenizer, args.reply_tokens)
    random.seed(0)
    try:
        results = await asyncio.gather(
            *(
                speaker(worker, script, reply, spoken_clips(args.turns, i), f"c{i}", args)
                for i in range(args.conversations)
            )
        )
    finally:
        worker.close()
    return [t for times in results for t in times]


def main() -> None:
    """Parse options, run batched and serial, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--turns", type=int, default=5, help="clips per conversation")
    parser.add_argument("--interval-s", type=float, default=2.0)
    parser.add_argument("--reply-tokens", type=int, default=16)
    args = parser.parse_args()

    loaded = load(args.size, args.device, args.dtype)
    figures: dict[str, Any] = {
        "size": args.size,
        "device": loaded.report.device,
        "conversations": args.conversations,
        "turns": args.turns,
        "interval_s": args.interval_s,
    }
    print(f"concurrency: size={args.size} device={loaded.report.device} K={args.conversations}")
    print(f"{'mode':>10} {'p50 ttft':>10} {'p95 ttft':>10} {'max':>8}")
    for mode, max_batch in (("batched", 16), ("serial", 1)):
        times = asyncio.run(run(loaded, args, max_batch))
        row = {
            "p50_ttft_ms": percentile(times, 50),
            "p95_ttft_ms": percentile(times, 95),
            "max_ttft_ms": max(times),
            "samples": len(times),
        }
        figures[mode] = row
        print(
            f"{mode:>10} {row['p50_ttft_ms']:>8.1f}ms {row['p95_ttft_ms']:>8.1f}ms "
            f"{row['max_ttft_ms']:>6.1f}ms"
        )
    print(f"wrote {write_json(f'concurrency-{args.size}', args.json, figures)}")


if __name__ == "__main__":
    main()
