"""Score a demo checkpoint through the PRODUCT's inference path on a synthesized split.

Everything runs through ``assistant.model_worker.ModelWorker`` (prompts by mistral-common with
the real tools registry of ``tools.yaml``, the checkpoint's feature extractor, greedy
decoding, the tool-call parser), exactly as ``voxtral-assistant listen`` would:

- **tool calls**: a spoken command -> the reply's tool calls equal the expected ones (name and
  every argument; numbers compare by value), per acoustic condition (clean, 10 dB noise);
- **other requests**: no tool call, and the reply says what the assistant can do;
- **replies after a tool result**: the conversation with the call and a realistic result ->
  exactly the expected confirmation sentence;
- **transcription**: word error rate of transcription mode (no language given, as the
  dialogue asks) on every clip, commands and yes/no answers;
- **yes / no**: the transcript of a spoken answer passes ``is_clear_yes`` / ``is_clear_no``
  as the dialogue decides it.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from training.grammar import CAPABILITIES, Call, reply_after


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation (for word error rates)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_errors(hyp: str, ref: str) -> tuple[int, int]:
    """(edit distance in words, reference words)."""
    from training.stage_hear import edit_distance

    r = normalize_words(ref)
    return edit_distance(normalize_words(hyp), r), len(r)


def _same_calls(got: list[Any], want: list[dict[str, Any]]) -> bool:
    got_keys = sorted(Call(c.name, dict(c.arguments)).key() for c in got)
    want_keys = sorted(Call(c["name"], dict(c["arguments"])).key() for c in want)
    return got_keys == want_keys


def _rate(values: list[int]) -> float:
    return round(100.0 * sum(values) / len(values), 2) if values else float("nan")


async def _score(
    folder: Path, data: Path, part: str, limit: int | None, batch: int, seed: int, guided: bool
) -> dict[str, Any]:
    from mistral_common.protocol.instruct.messages import (
        AssistantMessage,
        ToolMessage,
        UserMessage,
    )
    from mistral_common.protocol.instruct.tool_calls import FunctionCall, ToolCall

    from assistant.audio.io import audio_chunk
    from assistant.config import ModelSettings
    from assistant.conversation.confirmation import is_clear_no, is_clear_yes
    from assistant.model_worker import GREEDY, ModelWorker
    from training.audio_data import load_split
    from training.conversations import ExampleMaker, call_id

    split = load_split(data, part, with_pcm=True)
    order = list(range(len(split.meta)))
    if limit is not None and limit < len(order):
        order = random.Random(seed).sample(order, limit)
    settings = ModelSettings(device="cpu", max_batch=batch, guided_tool_calls=guided)
    worker = ModelWorker.load(folder, settings=settings)
    maker = ExampleMaker(worker.tokenizer)
    tools = maker.tools
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()

    async def one(i: int) -> dict[str, Any]:
        meta = split.meta[i]
        chunk = audio_chunk(split.pcm[i])
        row: dict[str, Any] = {"index": i, "kind": meta["kind"], "condition": meta["condition"],
                               "synth": meta["synth"], "voice": meta["voice"],
                               "template": meta["template"], "text": meta["text"]}  # fmt: skip
        done = await worker.respond(
            [UserMessage(content=[chunk])], tools=tools, params=GREEDY
        ).done()
        row["reply"] = done.text
        row["calls"] = [{"name": c.name, "arguments": c.arguments} for c in done.tool_calls]
        if meta["kind"] == "command":
            row["call_ok"] = _same_calls(list(done.tool_calls), meta["calls"])
        else:
            row["no_call"] = not done.tool_calls
            row["capabilities"] = not done.tool_calls and done.text.strip() == CAPABILITIES
        transcript = await worker.transcribe(split.pcm[i])
        row["transcript"] = transcript.text
        row["word_errors"], row["words"] = word_errors(transcript.text, meta["text"])
        if meta["kind"] == "yes":
            row["answer_ok"] = is_clear_yes(transcript.text)
        elif meta["kind"] == "no":
            row["answer_ok"] = is_clear_no(transcript.text) and not is_clear_yes(transcript.text)
        if meta["kind"] == "command" and meta["condition"] == "clean":
            call = Call(meta["calls"][0]["name"], meta["calls"][0]["arguments"])
            content = maker.result(call, rng)
            cid = call_id(rng)
            messages = [
                UserMessage(content=[chunk]),
                AssistantMessage(content=None, tool_calls=[ToolCall(
                    id=cid,
                    function=FunctionCall(name=call.name, arguments=dict(call.arguments)),
                )]),
                ToolMessage(content=content, tool_call_id=cid, name=call.name),
            ]  # fmt: skip
            after = await worker.respond(messages, tools=tools, params=GREEDY).done()
            row["result"] = content
            row["confirmation"] = after.text
            row["confirmation_ok"] = not after.tool_calls and after.text.strip() == reply_after(
                call, content
            )
        return row

    try:
        from tqdm import tqdm

        with tqdm(total=len(order), desc=f"evaluate {part}", unit="clip") as bar:
            for start in range(0, len(order), batch):
                group = order[start : start + batch]
                for row in await asyncio.gather(*(one(i) for i in group)):
                    rows.append(row)
                    bar.update(1)
    finally:
        worker.close()
    return summarize(rows, time.monotonic() - started)


def summarize(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The figures of a scored split."""
    out: dict[str, Any] = {"clips": len(rows), "minutes": round(seconds / 60, 2)}
    by: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "command":
            by[f"calls_{r['condition']}"].append(int(r["call_ok"]))
            by[f"calls_{r['condition']}_{r['synth']}"].append(int(r["call_ok"]))
            intent = r["template"].split("/")[0]
            by[f"calls_{r['condition']}_intent_{intent}"].append(int(r["call_ok"]))
        else:
            by[f"other_no_call_{r['condition']}"].append(int(r["no_call"]))
            by[f"other_capabilities_{r['condition']}"].append(int(r["capabilities"]))
        if "confirmation_ok" in r:
            by["confirmation_replies"].append(int(r["confirmation_ok"]))
        if "answer_ok" in r:
            by[f"yes_no_{r['condition']}"].append(int(r["answer_ok"]))
    for key, values in sorted(by.items()):
        out[key] = _rate(values)
        out[key + "_n"] = len(values)
    for condition in sorted({r["condition"] for r in rows}):
        sel = [r for r in rows if r["condition"] == condition]
        errors = sum(r["word_errors"] for r in sel)
        words = sum(r["words"] for r in sel)
        out[f"wer_{condition}"] = round(100.0 * errors / max(1, words), 2)
        cmd = [r for r in sel if r["kind"] in ("command", "yes", "no")]
        out[f"wer_{condition}_commands_and_answers"] = round(
            100.0 * sum(r["word_errors"] for r in cmd) / max(1, sum(r["words"] for r in cmd)), 2
        )
    out["rows"] = rows
    return out


def evaluate(
    folder: str | Path,
    data: str | Path,
    part: str = "heldout",
    limit: int | None = None,
    batch: int = 8,
    seed: int = 0,
    guided: bool = True,
) -> dict[str, Any]:
    """Score checkpoint ``folder`` on split ``part`` of ``data`` (``guided``: tool calls guided
    by the tools' schemas, the product's default)."""
    return asyncio.run(_score(Path(folder), Path(data), part, limit, batch, seed, guided))


HEADLINE = [
    "calls_clean", "calls_noise10", "other_no_call_clean", "other_capabilities_clean",
    "confirmation_replies", "wer_clean", "wer_noise10", "wer_clean_commands_and_answers",
    "yes_no_clean", "yes_no_noise10",
]  # fmt: skip
"""The figures that the goals name."""


def headline(figures: dict[str, Any]) -> str:
    """The figures that the goals name, one per line."""
    lines = []
    for k in HEADLINE:
        if k in figures:
            n = figures.get(k + "_n")
            lines.append(f"{k:40s} {figures[k]:7.2f} %" + (f"  (n={n})" if n else ""))
    return "\n".join(lines)


def save(figures: dict[str, Any], path: str | Path) -> None:
    """Write the figures (and every scored row) as JSON."""
    Path(path).write_text(json.dumps(figures, indent=1, ensure_ascii=False))
