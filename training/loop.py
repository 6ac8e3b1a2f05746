"""What every training stage shares: seeding, checkpoints that resume, a time budget, progress."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("training")

CHECKPOINT_EVERY_S = 180.0


def seed_everything(seed: int) -> None:
    """Python, numpy and torch generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every generator's state, for a checkpoint."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warmup, flat until 60 %, then cosine down to ``floor`` x peak.

    Flat for long on purpose: decaying before the model uses the audio freezes it on
    constant answers.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    start = int(total * 0.6)
    if step < start:
        return peak
    progress = min(1.0, (step - start) / max(1, total - start))
    return peak * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * progress)))


class Stage:
    """A resumable stage: ``state`` is saved every few minutes and at the end.

    ``state()`` returns what to save (model, heads, optimizer, step, anything); ``restore``
    takes it back. The stage counts the seconds it has run (over all sessions) in ``elapsed_s``.
    """

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.path = folder / f"{name}.ckpt"
        self.done_path = folder / f"{name}.done.json"
        self.elapsed_s = 0.0
        self._started = time.monotonic()
        self._saved = time.monotonic()

    @property
    def finished(self) -> bool:
        """The stage ran to its end in an earlier session."""
        return self.done_path.exists()

    def done_at(self, steps: int) -> bool:
        """The stage ran ``steps`` steps or more (asked for more, it resumes: ``--set
        speak.steps=N`` extends a finished stage, its schedule stretched to the new end)."""
        if not self.done_path.exists():
            return False
        return int(json.loads(self.done_path.read_text()).get("step", 0)) >= steps

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint, if any."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        self._started = time.monotonic()
        log.info("%s: resuming at step %s (%.1f min done)", self.name, state.get("step"),
                 self.elapsed_s / 60)  # fmt: skip
        return state

    def seconds(self) -> float:
        """Seconds this stage has run, over all sessions."""
        return self.elapsed_s + time.monotonic() - self._started

    def maybe_save(self, make_state: Callable[[], dict[str, Any]], force: bool = False) -> None:
        """Save if ``CHECKPOINT_EVERY_S`` passed since the last save (or ``force``)."""
        if not force and time.monotonic() - self._saved < CHECKPOINT_EVERY_S:
            return
        state = make_state()
        state["elapsed_s"] = self.seconds()
        state["rng"] = rng_state()
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)
        self._saved = time.monotonic()

    def finish(self, summary: dict[str, Any]) -> None:
        """Mark the stage done, with its figures."""
        summary = {**summary, "minutes": round(self.seconds() / 60, 2)}
        self.done_path.write_text(json.dumps(summary, indent=2))
        log.info("%s done: %s", self.name, summary)
