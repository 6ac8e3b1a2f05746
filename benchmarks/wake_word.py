"""Wake words: detections on synthesized wake phrases, false activations on other speech.

For each bundled model: how many of its phrase's renditions (espeak-ng voices en-us, en,
en-gb-x-rp at 120, 160 and 200 words per minute) fire it, and how many times it fires over a
stretch of other speech (sentences in the same voices, look-alike words included), given as a
count and per hour of speech.

Run: ``python benchmarks/wake_word.py``
"""

from __future__ import annotations

import platform

import numpy as np

from assistant.audio.wake import MicroWakeWordDetector
from assistant.testing.speech import synthesize

PHRASES = {"okay_nabu": "okay nabu", "alexa": "alexa", "hey_mycroft": "hey mycroft",
           "hey_jarvis": "hey jarvis"}  # fmt: skip
VOICES = ("en-us", "en", "en-gb-x-rp")
SPEEDS = (120, 160, 200)
OTHER = (
    "What time is it in Tokyo?",
    "Okay, now turn on the kitchen lights, please.",
    "Alexander and Nadia went to the market on Monday.",
    "Hey, my cousin Croft is coming for dinner tomorrow.",
    "Set a timer for ten minutes and remind me to call Anna.",
    "The weather tomorrow will be cloudy with a chance of rain in the afternoon.",
    "Could you play some jazz in the living room?",
    "Nobody knew the answer, so we looked it up in the encyclopedia.",
)


def _count(detector: MicroWakeWordDetector, pcm: np.ndarray) -> int:
    audio = np.concatenate([np.zeros(8000, np.int16), pcm, np.zeros(16000, np.int16)])
    return sum(detector.process(audio[i : i + 320]) for i in range(0, len(audio) - 319, 320))


def main() -> None:
    """Print one line per wake word."""
    other = [synthesize(t, v, s) for t in OTHER for v in VOICES for s in SPEEDS]
    other_s = sum(len(p) for p in other) / 16000
    print(f"machine: {platform.processor() or platform.machine()}; other speech {other_s:.0f} s")
    print("| wake word | phrase renditions detected | false activations | per hour of speech |")
    print("| --- | ---: | ---: | ---: |")
    for name, phrase in PHRASES.items():
        detector = MicroWakeWordDetector(name)
        hits = sum(_count(detector, synthesize(phrase, v, s)) >= 1 for v in VOICES for s in SPEEDS)
        false = sum(_count(detector, pcm) for pcm in other)
        print(
            f"| {name} | {hits}/{len(VOICES) * len(SPEEDS)} | {false} | "
            f"{false * 3600 / other_s:.1f} |"
        )


if __name__ == "__main__":
    main()
