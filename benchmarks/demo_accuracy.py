"""How well the shipped demo model understands, on speech that training never saw.

The held-out split (``python -m training data`` builds it first; this script builds it when
missing, about 2 minutes) is spoken by voices, at speeds and pitches, in phrasings and over
noises that the training split never uses (``training/voices.py``, ``training/grammar.py``,
``training/augment.py``). Every clip goes through the product's ``ModelWorker`` with the
shipped tools, greedy, as ``listen --model demo`` would run it:

- exact tool calls (name and every argument) on clean speech and in 10 dB noise;
- requests outside the tools: no call, the sentence on what it can do;
- the confirmation after a tool result;
- transcription word error rate; spoken yes / no read as the dialogue reads them.

    python benchmarks/demo_accuracy.py --data /tmp/demo-data [--limit 200] [--model FOLDER]
        [--compare-unguided]

``--compare-unguided`` scores the split a second time with guided tool calls off
(``model.guided_tool_calls``) and prints both columns side by side.

Run it alone, pinned (``taskset -c 1``): it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELDOUT_CLIPS = 800
"""The size of the held-out split the recipe builds (``training/__main__.py``)."""


def main() -> int:
    from assistant.model.checkpoint import DEMO_MODEL, resolve_checkpoint
    from training.audio_data import build_split
    from training.evaluate import HEADLINE, evaluate, headline, save

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the synthesized data")
    parser.add_argument("--part", default="heldout", help="split to score (default heldout)")
    parser.add_argument("--limit", type=int, default=None, help="score at most this many clips")
    parser.add_argument("--model", default=DEMO_MODEL, help="checkpoint (default: the demo)")
    parser.add_argument("--out", type=Path, default=None, help="write every scored row (JSON)")
    parser.add_argument(
        "--compare-unguided",
        action="store_true",
        help="score again with guided tool calls off and print both side by side",
    )
    args = parser.parse_args()
    if not (args.data / args.part / "split.json").exists():
        started = time.monotonic()
        build_split(args.data, args.part, HELDOUT_CLIPS if args.part == "heldout" else 600)
        print(f"built {args.part} in {(time.monotonic() - started) / 60:.1f} min")
    folder = resolve_checkpoint(args.model)
    figures = evaluate(folder, args.data, args.part, limit=args.limit)
    print(f"{folder} on {args.part}: {figures['clips']} clips in {figures['minutes']} min")
    print(headline(figures))
    if args.out is not None:
        save(figures, args.out)
    if args.compare_unguided:
        plain = evaluate(folder, args.data, args.part, limit=args.limit, guided=False)
        print(f"\n{'':40s} {'guided':>9s} {'unguided':>9s}")
        for key in HEADLINE:
            if key in figures:
                print(f"{key:40s} {figures[key]:8.2f}% {plain[key]:8.2f}%")
        if args.out is not None:
            save(plain, args.out.with_name(args.out.stem + "-unguided" + args.out.suffix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
