"""How soon a spoken reply starts: espeak-ng synthesis speed and time to first sound.

Plays through a private PulseAudio server (``tests.support.pulse.VirtualAudio``: a null
sink, so no sound card is needed) with the real ``Speaker`` stage (espeak-ng + PortAudio).

- synthesis: espeak-ng's time per sentence and its real-time factor (seconds of speech made per
  second of work), over sentences of 3 to 30 words;
- first sound: from the moment a sentence is handed to ``Speaker.say`` until its audio is handed
  to the output device (synthesis + opening the stream), plus the device's reported latency;
- streaming: a three-sentence reply arriving at ``--chars-per-s`` (a model's streaming rate);
  time from the reply's first character to the first sound when sentences are spoken as they
  complete (what ``listen`` does) versus when the whole reply is awaited.

Run: ``python benchmarks/speech_start.py [--repeats 5] [--chars-per-s 60]`` (prints figures,
writes JSON to ``benchmarks/out/speech_start.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

from assistant.audio.capture import rescan_devices
from assistant.speech.playback import SoundDevicePlayer
from assistant.speech.sentences import SentenceSplitter
from assistant.speech.speaker import Speaker
from assistant.speech.synthesis import EspeakSynthesizer
from tests.support.pulse import VirtualAudio

SENTENCES = [
    "Sure.",
    "The kitchen lights are on.",
    "It is a quarter past ten in the morning in Paris.",
    "I have set a timer for ten minutes, and I will tell you when the pasta is ready to drain.",
    "Tomorrow will be mostly sunny with a light breeze from the west, a high of twenty-one "
    "degrees and a low of twelve, so a light jacket should be enough in the evening.",
]
REPLY = (
    "The kitchen lights are now on. I also lowered the blinds in the living room. "
    "Is there anything else you would like me to do?"
)


def measure_synthesis(repeats: int) -> list[dict[str, float]]:
    """espeak-ng's time per sentence and real-time factor."""
    synthesizer = EspeakSynthesizer()
    rows = []
    for sentence in SENTENCES:
        times_s = []
        for _ in range(repeats):
            started = time.perf_counter()
            pcm = synthesizer.synthesize(sentence)
            times_s.append(time.perf_counter() - started)
        audio_s = len(pcm) / synthesizer.sample_rate_hz
        work_s = statistics.median(times_s)
        rows.append(
            {
                "words": len(sentence.split()),
                "audio_s": round(audio_s, 2),
                "synthesis_ms": round(work_s * 1000, 1),
                "x_real_time": round(audio_s / work_s, 1),
            }
        )
    return rows


async def time_to_sound(speaker: Speaker, say: list[str], feed_s: float = 0.0) -> float:
    """Seconds from the first text to the first sound handed to the device."""
    sound = asyncio.Event()
    speaker.on_speaking = lambda speaking: sound.set() if speaking else None
    started = time.monotonic()
    heard_at: list[float] = []

    async def watch() -> None:
        await sound.wait()
        heard_at.append(time.monotonic())

    watcher = asyncio.create_task(watch())
    splitter = SentenceSplitter()
    if feed_s:
        for text in say:
            for sentence in splitter.feed(text):
                speaker.say(sentence)
            await asyncio.sleep(feed_s)
        for sentence in splitter.flush():
            speaker.say(sentence)
    else:
        for sentence in say:
            speaker.say(sentence)
    await watcher
    await speaker.interrupt()
    return heard_at[0] - started


async def measure_playback(repeats: int, chars_per_s: float) -> dict[str, float]:
    """First-sound delays: one sentence, a streamed reply, and the whole reply awaited."""
    speaker = await Speaker(EspeakSynthesizer(), SoundDevicePlayer()).start()
    try:
        single = [await time_to_sound(speaker, [SENTENCES[1]]) for _ in range(repeats)]
        chunk_s = 4 / chars_per_s  # four characters per streamed piece, about one token
        pieces = [REPLY[i : i + 4] for i in range(0, len(REPLY), 4)]
        streamed = [await time_to_sound(speaker, pieces, feed_s=chunk_s) for _ in range(repeats)]
        whole_reply_s = len(REPLY) / chars_per_s
        awaited = [whole_reply_s + await time_to_sound(speaker, [REPLY]) for _ in range(repeats)]
        latency_s = _output_latency_s()
    finally:
        await speaker.aclose()
    return {
        "sentence_to_sound_ms": round(statistics.median(single) * 1000, 1),
        "device_output_latency_ms": round(latency_s * 1000, 1),
        "reply_streamed_first_sound_ms": round(statistics.median(streamed) * 1000, 1),
        "reply_awaited_first_sound_ms": round(statistics.median(awaited) * 1000, 1),
    }


def _output_latency_s() -> float:
    import sounddevice

    with sounddevice.OutputStream(samplerate=22050, channels=1, dtype="int16") as stream:
        return float(stream.latency)


def main() -> None:
    """Measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chars-per-s", type=float, default=60.0, help="reply streaming rate")
    args = parser.parse_args()
    synthesis = measure_synthesis(args.repeats)
    with VirtualAudio():
        rescan_devices()
        playback = asyncio.run(measure_playback(args.repeats, args.chars_per_s))
    print("espeak-ng synthesis (median of", args.repeats, "runs):")
    for row in synthesis:
        print(
            f"  {row['words']:>3} words  {row['audio_s']:>5.2f} s of speech  "
            f"{row['synthesis_ms']:>6.1f} ms  {row['x_real_time']:>6.1f}x real time"
        )
    print(f"sentence handed to say() -> sound to the device: {playback['sentence_to_sound_ms']} ms")
    print(
        f"device output latency (PortAudio, PulseAudio): {playback['device_output_latency_ms']} ms"
    )
    print(
        f"reply streaming at {args.chars_per_s:g} chars/s ({len(REPLY)} chars): first sound "
        f"after {playback['reply_streamed_first_sound_ms']} ms sentence by sentence, "
        f"{playback['reply_awaited_first_sound_ms']} ms when the whole reply is awaited"
    )
    out = Path(__file__).parent / "out" / "speech_start.json"
    out.parent.mkdir(exist_ok=True)
    record = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "chars_per_s": args.chars_per_s,
        "synthesis": synthesis,
        "playback": playback,
    }
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
