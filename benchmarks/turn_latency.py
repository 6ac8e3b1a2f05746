"""Time to first token and to done, per turn, of a spoken conversation: worker vs reference.

Each turn adds a 3-5 s espeak-ng clip; every reply is forced to the same length. The clock
starts when the utterance is ready (numpy samples in hand) and stops at the first generated
token and at the end of the reply.

- worker: ``ModelWorker.respond`` with one conversation id (prefix reuse, clip cache);
- reference: the documentation's usage every turn: ``processor.apply_chat_template`` over the
  whole conversation, then ``model.generate`` (every clip re-encoded, everything prefilled).

Run: ``python benchmarks/turn_latency.py --turns 12`` (``--size mini --device cuda`` on a GPU).
``--repeat N`` runs each path's whole conversation N times (a fresh worker each time, so every
clip is encoded again) and reports the per-turn median: on a shared machine one run's figures
carry the load spikes of that moment. Prints a table and writes
``benchmarks/out/turn_latency-<size>.json`` (medians, and every run's figures).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from model_bench import add_common_options, forced_reply, load, percentile, spoken_clips, write_json


class FirstTokenClock:
    """A ``generate`` streamer that notes when the first generated token arrives."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_s: float | None = None

    def put(self, value: Any) -> None:
        """The first call carries the prompt; the second the first new token."""
        self.calls += 1
        if self.calls == 2:
            self.first_s = time.monotonic()

    def end(self) -> None:
        """Nothing to flush."""


async def worker_turns(loaded: Any, clips: list[Any], reply: list[int]) -> list[dict[str, float]]:
    """Run the conversation through the worker; per-turn milliseconds."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage

    from assistant.audio.io import audio_chunk
    from assistant.config import GenerationParams
    from assistant.events import TextDelta
    from assistant.model.worker import ModelWorker
    from assistant.testing.forced import ScriptedReplies

    script = ScriptedReplies()
    worker = ModelWorker(loaded, logits_processor_factory=script.logits_processors)
    params = GenerationParams(max_new_tokens=len(reply) + 1, temperature=0.0)
    history: list[Any] = []
    rows = []
    try:
        for clip in clips:
            script.add(reply)
            started = time.monotonic()
            history.append(UserMessage(content=[audio_chunk(clip)]))
            first = None
            stream = worker.respond(history, params=params, conversation_id="bench")
            async for event in stream:
                if first is None and isinstance(event, TextDelta):
                    first = time.monotonic()
            done = time.monotonic()
            history.append(AssistantMessage(content=worker.tokenizer.decode(reply[:-1])))
            rows.append(
                {"ttft_ms": 1000 * ((first or done) - started), "done_ms": 1000 * (done - started)}
            )
    finally:
        worker.close()
    return rows


def reference_turns(loaded: Any, clips: list[Any], reply: list[int]) -> list[dict[str, float]]:
    """Run the conversation the documentation's way; per-turn milliseconds."""
    import torch
    from transformers import AutoProcessor

    from assistant.testing.forced import ForcedTokens
    from assistant.testing.speech import write_wav

    model = loaded.model
    processor = AutoProcessor.from_pretrained(loaded.report.folder)
    folder = Path(tempfile.mkdtemp(prefix="bench-clips-"))
    conversation: list[dict[str, Any]] = []
    text = loaded.tokenizer.decode(reply[:-1])
    rows = []
    for index, clip in enumerate(clips):
        started = time.monotonic()
        path = write_wav(str(folder / f"turn{index}.wav"), clip)
        conversation.append({"role": "user", "content": [{"type": "audio", "path": path}]})
        inputs = processor.apply_chat_template(conversation).to(model.device)
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(model.dtype)
        clock = FirstTokenClock()
        with torch.inference_mode():
            model.generate(
                **inputs,
                max_new_tokens=len(reply) + 1,
                do_sample=False,
                logits_processor=[ForcedTokens([reply])],
                streamer=clock,
            )
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        done = time.monotonic()
        conversation.append({"role": "assistant", "content": text})
        rows.append(
            {
                "ttft_ms": 1000 * ((clock.first_s or done) - started),
                "done_ms": 1000 * (done - started),
            }
        )
    return rows


def per_turn_median(runs: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Turn by turn, the median of each figure over the runs."""
    return [
        {key: percentile([run[turn][key] for run in runs], 50) for key in runs[0][turn]}
        for turn in range(len(runs[0]))
    ]


def main() -> None:
    """Parse options, run both paths, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--reply-tokens", type=int, default=16)
    parser.add_argument("--skip-reference", action="store_true", help="time the worker only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per path; medians reported")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    loaded = load(args.size, args.device, args.dtype)
    clips = spoken_clips(args.turns)
    reply = forced_reply(loaded.tokenizer, args.reply_tokens)
    warm = spoken_clips(1)
    asyncio.run(worker_turns(loaded, warm, reply))  # first-call costs (allocator, kernels)
    worker_runs = [asyncio.run(worker_turns(loaded, clips, reply)) for _ in range(args.repeat)]
    reference_runs = (
        []
        if args.skip_reference
        else [reference_turns(loaded, clips, reply) for _ in range(args.repeat)]
    )
    worker = per_turn_median(worker_runs)
    reference = per_turn_median(reference_runs) if reference_runs else []

    print(
        f"turn_latency: size={args.size} device={loaded.report.device} turns={args.turns} "
        f"runs={args.repeat} (per-turn medians)"
    )
    print(
        f"{'turn':>4} {'clip s':>6} | {'worker ttft':>11} {'done':>8} | {'ref ttft':>9} {'done':>8}"
    )
    for i, row in enumerate(worker):
        ref = reference[i] if reference else {"ttft_ms": float("nan"), "done_ms": float("nan")}
        print(
            f"{i + 1:>4} {len(clips[i]) / 16000:>6.2f} | {row['ttft_ms']:>9.1f}ms "
            f"{row['done_ms']:>6.1f}ms | {ref['ttft_ms']:>7.1f}ms {ref['done_ms']:>6.1f}ms"
        )
    summary = {"worker_last_over_first_ttft": worker[-1]["ttft_ms"] / worker[0]["ttft_ms"]}
    if args.repeat > 1:  # best of the runs: the least disturbed by other load on the machine
        best = [min(run[turn]["ttft_ms"] for run in worker_runs) for turn in range(args.turns)]
        summary["worker_last_over_first_ttft_best_of_runs"] = best[-1] / best[0]
    if reference:
        summary["reference_last_over_first_ttft"] = (
            reference[-1]["ttft_ms"] / reference[0]["ttft_ms"]
        )
        summary["speedup_at_last_turn"] = reference[-1]["ttft_ms"] / worker[-1]["ttft_ms"]
    for key, value in summary.items():
        print(f"{key}: {value:.2f}")
    path = write_json(
        f"turn_latency-{args.size}",
        args.json,
        {
            "size": args.size,
            "device": loaded.report.device,
            "dtype": loaded.report.dtype,
            "turns": args.turns,
            "reply_tokens": args.reply_tokens,
            "runs": args.repeat,
            "worker": worker,
            "reference": reference,
            "worker_runs": worker_runs,
            "reference_runs": reference_runs,
            "summary": summary,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
