"""``torch.compile`` for the decode step over static KV caches, with a warm-up at load time.

Both are off by default. A static cache has fixed shapes, so the compiled decode step is traced
once (in the warm-up) and reused by every later generation. On CPU, transformers does not
compile on its own; the worker asks it to (``_compile_all_devices``) when a backend is set, so
the same code path runs in tests with a cheap backend (``eager``/``aot_eager``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.config import ModelSettings
    from assistant.model.engine import Engine

WARM_UP_TOKENS = 4


def make_compile_config(options: ModelSettings, device: str) -> Any:
    """The ``CompileConfig`` for ``generate``, or None when compilation is off."""
    if options.compile_backend is None:
        return None
    if options.static_cache_tokens is None:
        raise ValueError("torch.compile needs static caches: set static_cache_tokens too")
    from transformers import CompileConfig

    inductor = options.compile_backend == "inductor"
    config = CompileConfig(
        backend=options.compile_backend,
        fullgraph=False,
        dynamic=False,
        mode="reduce-overhead" if inductor and device.startswith("cuda") else "default",
    )
    if not device.startswith("cuda"):
        config._compile_all_devices = True  # type: ignore[assignment]
    return config


def warm_up(engine: Engine, prompt_tokens: list[int]) -> None:
    """One short generation so that compilation happens at load time, not for the first user."""
    from assistant.model.engine import Job, Sampling
    from assistant.model.prompting import EncodedPrompt

    factory = engine.logits_processor_factory
    engine.logits_processor_factory = None  # scripted replies belong to real requests
    try:
        job = Job(
            EncodedPrompt(list(prompt_tokens), []),
            Sampling(max_new_tokens=WARM_UP_TOKENS, temperature=0.0, top_p=1.0),
            on_token=lambda token: None,
            cancelled=threading.Event(),
        )
        engine.run([job])
    finally:
        engine.logits_processor_factory = factory
