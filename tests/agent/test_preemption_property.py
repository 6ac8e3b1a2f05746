"""Preemptive turns leave no trace: random speech/silence patterns, preemption on and off.

The desktop agent hears a recording of random noise bursts (speech) and pauses, some shorter
than the VAD hangover (the speech goes on: a speculation started at the pause is discarded),
some longer (the turn is committed: the speculation is adopted). The same recording is played
with ``dialogue.preemptive`` on and off; what anyone can observe must be the same: every record
the display showed (the user's transcripts included), the history, and the tool calls made.

The VAD's frame classifier is an energy threshold here, so that noise is speech and zeros are
silence, deterministically; everything else (segmenter, agent, dialogue, model worker with the
tiny model) is the real thing.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from assistant.audio.vad import VadSegmenter
from assistant.config import DialogueSettings
from assistant.conversation.dialogue import Dialogue
from assistant.conversation.speculation import SpeculationStats
from assistant.desktop.agent import VoiceAgent, file_frames
from assistant.desktop.display import JsonDisplay
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies
from assistant.tools import ToolRegistry, tool

RATE_HZ = 16_000
TURNS_SCRIPTED = 6
"""Replies queued per run: more than the longest pattern can commit."""


UNSTABLE_KEYS = frozenset(
    {"at_s", "duration_s", "metrics", "item_id", "id", "call_id", "tool_call_id"}
)
"""Record and message fields that differ from run to run whatever happens: random ids and
wall-clock figures."""


class EnergyClassifier:
    """Voiced when a frame's RMS is over a threshold: noise is speech, zeros are silence."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples

    def is_speech(self, frame: np.ndarray) -> bool:
        """Whether the frame is loud."""
        return float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > 500.0

    def reset(self) -> None:
        """Nothing to forget."""


@pytest.fixture(scope="module")
def scripted_worker(tiny_model_dir: Path) -> Iterator[tuple[ModelWorker, ScriptedReplies]]:
    """One tiny-model worker for every example, playing a script that is reset per run."""
    script = ScriptedReplies(MistralTokenizer.from_file(str(tiny_model_dir / "tekken.json")))
    worker = ModelWorker.load(
        tiny_model_dir, device="cpu", logits_processor_factory=script.logits_processors
    )
    yield worker, script
    worker.close()


def recording(pattern: list[tuple[int, int]], seed: int) -> np.ndarray:
    """300 ms of silence, then (speech ms, silence ms) pairs: noise bursts and zeros."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(RATE_HZ * 300 // 1000, dtype=np.int16)]
    for speech_ms, silence_ms in pattern:
        noise = rng.normal(0.0, 4000.0, RATE_HZ * speech_ms // 1000).clip(-32000, 32000)
        parts.append(noise.astype(np.int16))
        parts.append(np.zeros(RATE_HZ * silence_ms // 1000, dtype=np.int16))
    return np.concatenate(parts)


def _without_ids(value: Any) -> Any:
    """Records and messages with their random ids and wall-clock figures taken out."""
    if isinstance(value, dict):
        return {key: _without_ids(item) for key, item in value.items() if key not in UNSTABLE_KEYS}
    if isinstance(value, list):
        return [_without_ids(item) for item in value]
    return value


async def _play(
    worker: ModelWorker, script: ScriptedReplies, audio: np.ndarray, preemptive: bool
) -> tuple[list[Any], list[Any], list[Any], SpeculationStats]:
    """Run the agent on ``audio``: display records, history, what the model was asked and the
    tool calls made, speculations."""
    script.reset()
    for k in range(1, TURNS_SCRIPTED + 1):
        script.say(f"Turn {k}.", [{"name": "note", "arguments": {"n": k}}])
        script.say(f"Noted {k}.")
        script.hear(f"heard {k}")
    calls: list[int] = []

    @tool
    def note(n: int) -> str:
        """Note a number (the test's recording tool)."""
        calls.append(n)
        return f"noted {n}"

    dialogue = Dialogue(
        worker, ToolRegistry.from_functions([note]), DialogueSettings(preemptive=preemptive)
    )
    segmenter = VadSegmenter()
    segmenter._classifier = EnergyClassifier(segmenter.frame_samples)
    display = JsonDisplay(io.StringIO())
    agent = VoiceAgent(dialogue, segmenter, display)
    try:
        await agent.run(file_frames(audio, realtime=False), turn_by_turn=True)
        await dialogue.drain()
    finally:
        await dialogue.aclose()
    # A discarded speculation may still be on the model thread: let it end before the next run.
    assert await asyncio.to_thread(worker.wait_idle, 60)
    stream = display.stream
    assert isinstance(stream, io.StringIO)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    history = [message.model_dump(mode="json") for message in dialogue.history]
    asked = [[_call_ids(p) for p in script.prompts], script.transcription_prompts, calls]
    return _without_ids(records), _without_ids(history), asked, dialogue.speculations


def _call_ids(prompt: str) -> str:
    """A prompt with its tool calls' random ids taken out."""
    prompt = re.sub(r'"id": "[A-Za-z0-9]{9}"', '"id": ""', prompt)
    return re.sub(r"\[TOOL_RESULTS\][A-Za-z0-9]{9}", "[TOOL_RESULTS]", prompt)


def _transcripts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"].startswith("user_transcript")]


def _others(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if not r["type"].startswith("user_transcript")]


PATTERN = st.lists(
    st.tuples(
        st.integers(min_value=300, max_value=700).map(lambda ms: ms // 20 * 20),
        st.sampled_from([40, 100, 200, 300, 460, 520, 700, 900]),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pattern=PATTERN, seed=st.integers(min_value=0, max_value=2**16))
def test_preemption_changes_nothing_anyone_can_see(
    scripted_worker: tuple[ModelWorker, ScriptedReplies], pattern: list[tuple[int, int]], seed: int
) -> None:
    """Display records, transcripts, history, model prompts and tool calls are those of a run
    without preemption; every committed turn adopted its speculation, the others were
    discarded."""
    worker, script = scripted_worker
    audio = recording(pattern, seed)
    off = asyncio.run(_play(worker, script, audio, preemptive=False))
    on = asyncio.run(_play(worker, script, audio, preemptive=True))
    records, history, asked, stats = on
    # Transcripts come on their own, whenever they are ready: their place among the other
    # records is timing, their content and order are not.
    assert _transcripts(records) == _transcripts(off[0])
    assert _others(records) == _others(off[0])
    assert history == off[1]
    assert asked == off[2]
    turns = sum(record["type"] == "utterance" for record in records)
    hints = sum(record["type"] == "speech_end_likely" for record in records)
    assert (stats.adopted, stats.discarded) == (turns, stats.started - turns)
    assert stats.started == hints and off[3].started == 0
