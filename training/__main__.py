"""``python -m training``: build the demo Voxtral from nothing (see ``training/README.md``).

    python -m training all --run /work/demo-runs/r1 --data /work/demo-runs/data

runs every step; each one is skipped when its output exists and resumes from its last
checkpoint when interrupted, so the same command finishes a run that spans sessions. Steps
one by one: ``data``, ``tokenizer``, ``hear``, ``speak`` (which caches the audio embeddings
and makes the examples first), ``export``, ``evaluate``; ``ship`` copies the exported checkpoint
into the package (``assistant/model/demo``, what ``--model demo`` loads).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from training.loop import Stage

log = logging.getLogger("training")

DEFAULTS: dict[str, Any] = {
    "train_clips": 24000,
    "dev_clips": 600,
    "heldout_clips": 800,
    "more_clips": 0,
    "devnew_clips": 0,
    "train_parts": ["train"],
    "init": None,
    "examples": 60000,
    "seed": 0,
}
"""``train_parts``: the splits both stages train on (``train``, ``more``); ``init``: a
checkpoint folder whose weights and tokenizer a run starts from instead of random ones (a
shipped demo, to train it further); ``devnew_clips``: also synthesize the ``devnew`` split."""


def _config(run: Path) -> dict[str, Any]:
    path = run / "recipe.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _counts(args: argparse.Namespace) -> dict[str, int]:
    """Clips per split, as the recipe asks."""
    return {
        "heldout": args.heldout_clips, "dev": args.dev_clips, "devnew": args.devnew_clips,
        "train": args.train_clips, "more": args.more_clips,
    }  # fmt: skip


def step_data(args: argparse.Namespace) -> None:
    """Synthesize the training, dev and held-out clips (each split once)."""
    from training.audio_data import build_split

    counts = _counts(args)
    for part in args.train_parts:
        if part not in ("train", "more"):
            raise SystemExit(f"train_parts: no training split {part!r} (train, more)")
        if not counts[part]:
            raise SystemExit(f"train_parts names {part!r} but {part}_clips is 0")
    wanted = ["heldout", "dev", *(["devnew"] if args.devnew_clips else []), *args.train_parts]
    for part in wanted:
        count = counts[part]
        started = time.monotonic()
        build_split(args.data, part, count, workers=args.workers)
        log.info("data %s: %.1f min", part, (time.monotonic() - started) / 60)


def step_tokenizer(args: argparse.Namespace) -> Path:
    """Learn the Tekken merges (once per run), or take ``init``'s tokenizer."""
    import shutil

    from training.tokenizer import build

    path = args.run / "tekken.json"
    if not path.exists():
        if args.init:
            shutil.copyfile(Path(args.init) / "tekken.json", path)
        else:
            build(args.run, seed=args.seed)
    return path


def _tokenizer(args: argparse.Namespace) -> Any:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.from_file(str(step_tokenizer(args)))


def _model(args: argparse.Namespace, tokenizer: Any) -> Any:
    from training.model import DemoSpec, build_model, load_weights

    spec = DemoSpec(**args.spec)
    model = build_model(tokenizer.instruct_tokenizer.tokenizer.n_words, spec, args.seed)
    if args.init:
        load_weights(model, Path(args.init), seed=args.seed)
    return model


def _train_split(args: argparse.Namespace) -> Any:
    from training.audio_data import concat, load_split

    counts = _counts(args)
    return concat([load_split(args.data, part, count=counts[part]) for part in args.train_parts])


def step_hear(args: argparse.Namespace) -> Any:
    """Stage 1 (encoder and projector); returns the model."""
    import torch

    from training import stage_hear
    from training.audio_data import load_split

    tokenizer = _tokenizer(args)
    model = _model(args, tokenizer)
    stage = stage_hear.HearConfig(**args.hear)
    if args.init and stage.steps == 0:  # the encoder and projector stay as init has them
        return model
    if Stage(args.run, "hear").done_at(stage.steps):
        model.load_state_dict(torch.load(args.run / "hear.ckpt", weights_only=False)["model"])
        return model
    train = _train_split(args)
    dev = load_split(args.data, "dev")
    stage_hear.run(args.run, model, tokenizer, train, dev, stage)
    return model


def step_speak(args: argparse.Namespace) -> Any:
    """Stage 2 (decoder): audio embeddings, examples, training; returns the model."""
    import torch

    from training import stage_speak
    from training.audio_data import load_split
    from training.conversations import ExampleMaker

    model = step_hear(args)
    tokenizer = _tokenizer(args)
    config = stage_speak.SpeakConfig(**args.speak)
    if Stage(args.run, "speak").done_at(config.steps):
        model.load_state_dict(torch.load(args.run / "speak.ckpt", weights_only=False)["model"])
        return model
    cache = args.run / "speak_inputs.pt"
    if cache.exists():
        inputs = torch.load(cache, weights_only=False)
    else:
        started = time.monotonic()
        train = _train_split(args)
        dev = load_split(args.data, "dev")
        maker = ExampleMaker(tokenizer)
        clips, keep = stage_speak.copied_clips(train, config.copies)
        inputs = {
            "train_audio": stage_speak.audio_copies(model, train, config, args.seed),
            "dev_audio": stage_speak.cache_audio(
                model, dev, frames=config.audio_frames, tokens=config.audio_tokens
            ),
            "train_examples": stage_speak.make_examples(maker, clips, args.examples, args.seed),
            "dev_examples": stage_speak.make_examples(
                maker, stage_speak.clips_of(dev), 400, args.seed + 1
            ),
            "train_keep": keep,
            "dev_keep": stage_speak.keep_counts(dev),
            "minutes": (time.monotonic() - started) / 60,
        }
        torch.save(inputs, cache)
        log.info("speak inputs: %.1f min", inputs["minutes"])
    stage_speak.run(args.run, model, inputs, config)
    return model


def step_export(args: argparse.Namespace) -> Path:
    """Write the checkpoint folder the product loads."""
    from training.export import export, folder_bytes

    model = step_speak(args)
    folder = export(model, args.run / "tekken.json", args.run / "checkpoint")
    log.info("checkpoint %s: %.1f MB", folder, folder_bytes(folder) / 1e6)
    return folder


SHIPPED = Path(__file__).parents[1] / "assistant" / "model" / "demo"
"""Where the package keeps the demo checkpoint (``--model demo``)."""


def step_ship(args: argparse.Namespace) -> Path:
    """Copy the exported checkpoint into the package (``assistant/model/demo``)."""
    import shutil

    folder = args.run / "checkpoint"
    if not folder.exists():
        folder = step_export(args)
    if SHIPPED.exists():
        shutil.rmtree(SHIPPED)
    shutil.copytree(folder, SHIPPED)
    log.info("shipped %s -> %s", folder, SHIPPED)
    return SHIPPED


def step_evaluate(args: argparse.Namespace) -> None:
    """Score the checkpoint on the dev split through the product's inference path."""
    from training.evaluate import evaluate, headline, save

    folder = args.run / "checkpoint"
    if not folder.exists():
        folder = step_export(args)
    figures = evaluate(folder, args.data, args.part, limit=args.limit)
    save(figures, args.run / f"eval_{args.part}.json")
    print(headline(figures))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from training.stage_hear import HearConfig
    from training.stage_speak import SpeakConfig

    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["data", "tokenizer", "hear", "speak", "export",
                                         "evaluate", "ship", "all"])  # fmt: skip
    parser.add_argument("--run", type=Path, required=True, help="folder of this training run")
    parser.add_argument("--data", type=Path, required=True, help="folder of the synthesized data")
    parser.add_argument("--workers", type=int, default=3, help="processes for synthesis")
    parser.add_argument("--part", default="dev", help="split that evaluate scores")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most this many")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value: hear.steps=3000, spec.text_layers=3, ...",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import torch

    torch.set_num_threads(2)
    args.run.mkdir(parents=True, exist_ok=True)
    recipe: dict[str, Any] = {**DEFAULTS, "spec": {}, "hear": asdict(HearConfig()),
                              "speak": asdict(SpeakConfig())}  # fmt: skip
    recipe.update(_config(args.run))
    for item in args.set:
        key, _, value = item.partition("=")
        target = recipe
        *path, last = key.split(".")
        for part in path:
            target = target.setdefault(part, {})
        target[last] = json.loads(value)
    (args.run / "recipe.json").write_text(json.dumps(recipe, indent=2))
    for key, value in recipe.items():
        setattr(args, key, value)
    known = {f.name for f in fields(HearConfig)}
    args.hear = {k: v for k, v in args.hear.items() if k in known}
    started = time.monotonic()
    steps = {
        "data": step_data, "tokenizer": step_tokenizer, "hear": step_hear, "speak": step_speak,
        "export": step_export, "evaluate": step_evaluate, "ship": step_ship,
    }  # fmt: skip
    if args.step == "all":
        step_data(args)
        step_export(args)
        step_evaluate(args)
    else:
        steps[args.step](args)
    log.info("%s: %.1f min wall", args.step, (time.monotonic() - started) / 60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
