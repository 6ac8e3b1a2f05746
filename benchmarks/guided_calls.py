"""What guided tool calls cost: building the guide, and each token inside a call.

For two vocabularies — the demo's (3,264 ids) and Voxtral's real Tekken (131,072 ids, the one
mistral-common ships, as the test kit writes it) — with the shipped tools:

- the guide's build time (once per model load: the vocabulary handed to llguidance);
- the first grammar of a tool set (once per tool set, then kept);
- per token inside a call: the row's bookkeeping (``RowGuide.feed`` + ``allowed``) and the whole
  ``GuideProcessor`` step on a batch of one (``scores`` masked in place), over the tokens of a
  real call as mistral-common writes it, repeated.

Run alone, pinned: ``taskset -c 1 python benchmarks/guided_calls.py``. It prints figures; it
asserts nothing. Tokens outside a call cost nothing (the processor is not even added to a batch
without tools).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPEATS = 20
CALL = {
    "name": "set_light",
    "arguments": {"room": "living_room", "state": "on", "brightness": 128},
}


def measure(name: str, tekken_path: Path, tools: list[object]) -> None:
    import torch
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from assistant.model.guide import GuideProcessor, ToolCallGuide
    from assistant.testing.forced import reply_tokens

    tokenizer = MistralTokenizer.from_file(str(tekken_path))
    tekken = tokenizer.instruct_tokenizer.tokenizer
    started = time.perf_counter()
    guide = ToolCallGuide(tekken, int(tekken.get_special_token("[TOOL_CALLS]")))
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    guide.row(tools)
    grammar_s = time.perf_counter() - started
    call = reply_tokens(tokenizer, None, [CALL])  # [TOOL_CALLS] ... </s>

    row_ms, step_ms = [], []
    for _ in range(REPEATS):
        row = guide.row(tools)
        assert row is not None
        row.feed(call[0])
        started = time.perf_counter()
        for token in call[1:]:
            row.allowed()
            row.feed(token)
        row_ms.append(1000 * (time.perf_counter() - started) / (len(call) - 1))

        processor = GuideProcessor([guide.row(tools)])
        scores = torch.zeros(1, guide.vocab_size)
        processor(torch.tensor([[1]]), scores)  # the prompt's step
        started = time.perf_counter()
        for token in call:
            processor(torch.tensor([[token]]), scores.zero_())
        step_ms.append(1000 * (time.perf_counter() - started) / len(call))
    print(
        f"{name:>22} | {guide.vocab_size:>7} ids | build {build_s:6.2f} s | first grammar "
        f"{1000 * grammar_s:6.1f} ms | per token: row {statistics.median(row_ms):6.3f} ms, "
        f"processor step {statistics.median(step_ms):6.3f} ms ({len(call)} tokens/call)"
    )


def main() -> int:
    from assistant.testing.tekken import write_tekken
    from assistant.tools.loader import load_tools
    from training.conversations import without_plugins

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tools = load_tools(without_plugins(repo / "tools.yaml", tmp)).mistral_tools()
        measure("demo (shipped)", repo / "assistant" / "model" / "demo" / "tekken.json", tools)
        measure("Voxtral Tekken", write_tekken(Path(tmp) / "tekken", "v7", "tekken"), tools)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
