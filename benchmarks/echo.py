"""Echo cancellation in a simulated room: ERLE, false barge-ins and barge-in reaction time.

Runs ``WebRtcEchoCanceller`` through ``tests.support.echo_sim`` (stream time, no sound card):
a three-sentence espeak-ng reply played into a ``Room``; per room it prints the echo return
loss enhancement before and after warm-up, how often the residual started speech in the VAD
after warm-up (a false barge-in), how soon the user talking over the reply was heard (VAD
speech start minus the user's onset, the VAD's 250 ms of minimum speech included), and the
canceller's cost as a share of one core.

Run: ``python benchmarks/echo.py``
"""

from __future__ import annotations

import platform

import numpy as np

from assistant.audio.echo import WebRtcEchoCanceller
from assistant.audio.vad import VadSegmenter
from assistant.config import VadSettings
from assistant.events import SpeechStarted
from assistant.speech.synthesis import EspeakSynthesizer
from assistant.testing.speech import synthesize
from tests.support.echo_sim import CallResult, erle_db, simulate_call
from tests.support.room import Room

REPLY = (
    "This reply is long on purpose.",
    "It goes on for a few sentences, so that the echo canceller has time to learn the room.",
    "That leaves time to talk over it, and to measure how much of the echo is left.",
)
USER_AT_S = 8.0
ROOMS = {
    "40 ms, 6 dB down, RT60 0.3 s": Room(),
    "150 ms delay": Room(delay_ms=150),
    "300 ms delay": Room(delay_ms=300),
    "200 ppm clock drift": Room(drift_ppm=200),
    "saturating speaker, 0 dB": Room(saturation=0.3, attenuation_db=0),
}


def _detections_ms(pcm: np.ndarray) -> list[int]:
    """Stream time (ms) at which the VAD reports speech started."""
    segmenter = VadSegmenter(VadSettings())
    found = []
    for offset in range(0, len(pcm) - 319, 320):
        for event in segmenter.process(pcm[offset : offset + 320]):
            if isinstance(event, SpeechStarted):
                found.append(offset * 1000 // 16000 + 20)
    return found


def main() -> None:
    """Print one line per room."""
    espeak = EspeakSynthesizer()
    reply = np.concatenate([espeak.synthesize(s) for s in REPLY])
    user = synthesize("Stop, stop, what about tomorrow?")
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(
        "| room | ready at | ERLE before ready | ERLE after | false starts after ready | "
        "ready at, user talking | user heard after | % of a core |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, room in ROOMS.items():
        call = simulate_call(WebRtcEchoCanceller(), reply, espeak.sample_rate_hz, room)
        ready_s = call.ready_at_s or 0.0
        end_s = len(call.mic) / 16000 - 1.5
        before = erle_db(call.echo, call.out, 0.5, ready_s)
        after = erle_db(call.echo, call.out, ready_s, end_s)
        false_starts = [ms for ms in _detections_ms(call.out) if ms > ready_s * 1000]
        talk = simulate_call(
            WebRtcEchoCanceller(), reply, espeak.sample_rate_hz, room, user=user,
            user_at_s=USER_AT_S,
        )  # fmt: skip
        heard = [ms for ms in _detections_ms(talk.out) if ms > (talk.ready_at_s or 0) * 1000]
        reaction = f"{heard[0] - USER_AT_S * 1000:.0f} ms" if heard else "not heard"
        share = 100 * call.busy_s / (len(call.mic) / 16000)
        print(
            f"| {name} | {_at(call)} | {before:.1f} dB | {after:.1f} dB | {len(false_starts)} | "
            f"{_at(talk)} | {reaction} | {share:.2f} |"
        )


def _at(call: CallResult) -> str:
    """When the canceller said it was ready (stream time; the reply starts at 0.5 s)."""
    return "never" if call.ready_at_s is None else f"{call.ready_at_s:.1f} s"


if __name__ == "__main__":
    main()
