"""Long recordings made of real espeak-ng speech with known pauses."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from assistant.testing.speech import synthesize

SENTENCES = (
    "The committee met on Tuesday to discuss the budget for next year.",
    "Several members asked for more money for the public library.",
    "After a long debate the proposal was accepted by a narrow margin.",
    "The weather in the mountains will be cold and windy this weekend.",
    "Please remember to bring your passport to the airport.",
    "Our train leaves at half past seven from platform three.",
    "She has been learning to play the violin for six years.",
    "The new bridge over the river opens to traffic in April.",
)


@functools.cache
def speech(sentence: str) -> np.ndarray:
    """One sentence spoken by espeak-ng (16 kHz int16), synthesized once per run."""
    return synthesize(sentence)


@dataclass(frozen=True)
class Recording:
    """Speech with pauses; ``spans_ms`` are where each sentence's audio lies."""

    pcm: np.ndarray
    spans_ms: list[tuple[int, int]]

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / 16000


def recording(
    sentences: int, pauses_s: tuple[float, ...] = (1.0,), lead_s: float = 0.5
) -> Recording:
    """``sentences`` sentences in turn, each followed by the next pause of ``pauses_s``."""
    parts = [np.zeros(int(lead_s * 16000), dtype=np.int16)]
    spans: list[tuple[int, int]] = []
    position = len(parts[0])
    for number in range(sentences):
        pcm = speech(SENTENCES[number % len(SENTENCES)])
        spans.append((position // 16, (position + len(pcm)) // 16))
        pause = np.zeros(int(pauses_s[number % len(pauses_s)] * 16000), dtype=np.int16)
        parts += [pcm, pause]
        position += len(pcm) + len(pause)
    return Recording(np.concatenate(parts), spans)
