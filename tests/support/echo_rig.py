"""Open speakers on virtual sound devices: the speaker reaches the microphone through a room.

``EchoRig`` needs a ``VirtualAudio`` started with a ``room_sink_name``: the agent plays into the
virtual speaker as usual, and the virtual microphone hears the room sink. The rig records the
speaker (its monitor, with ``parec``), passes the sound through a simulated ``Room`` (delay,
reverberation, attenuation; ``tests.support.room``) and plays the result into the room sink
(``pacat``), chunk by chunk, in real time. The user is another sound played into the room sink
(``say``): PulseAudio mixes the two, as the air would. The delay the microphone hears is the
room's plus PulseAudio's buffers (tens of milliseconds).

The rig's thread and processes end with ``stop()`` (or the ``with`` block), and die with the
test process.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np

from assistant.events import SAMPLE_RATE_HZ
from tests.support.processes import Service
from tests.support.pulse import PulseAudioError, VirtualAudio, _die_with_parent
from tests.support.room import Room, RoomFilter, to_pcm16

CHUNK_SAMPLES = SAMPLE_RATE_HZ // 100
"""The rig moves sound in 10 ms chunks."""


class EchoRig(Service):
    """The speaker → room → microphone path of ``audio``, simulated while it runs."""

    def __init__(self, audio: VirtualAudio, room: Room, *, latency_ms: int = 50) -> None:
        if audio.room_sink_name is None:
            raise PulseAudioError("EchoRig needs VirtualAudio(room_sink_name=...)")
        self.audio = audio
        self.room = room
        self.latency_ms = latency_ms
        self.chunks = 0
        """10 ms chunks carried so far (a test can wait until the rig runs)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._record: subprocess.Popen[bytes] | None = None
        self._play: subprocess.Popen[bytes] | None = None

    def start(self) -> EchoRig:
        """Start recording the speaker and playing the room's echo into the microphone."""
        raw = ["--raw", "--format=s16le", f"--rate={SAMPLE_RATE_HZ}", "--channels=1"]
        latency = f"--latency-msec={self.latency_ms}"
        self._record = subprocess.Popen(
            ["parec", "-d", f"{self.audio.sink_name}.monitor", *raw, latency,
             "--client-name=echo-rig-speaker"],
            env=self.audio.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )  # fmt: skip
        self._play = subprocess.Popen(
            ["pacat", "--playback", "-d", str(self.audio.room_sink_name), *raw, latency,
             "--client-name=echo-rig-room"],
            env=self.audio.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._carry, name="echo-rig", daemon=True)
        self._thread.start()
        return self

    def _carry(self) -> None:
        assert self._record is not None and self._record.stdout is not None  # started above
        assert self._play is not None and self._play.stdin is not None
        source, sink = self._record.stdout, self._play.stdin
        room = RoomFilter(self.room)
        want = CHUNK_SAMPLES * 2
        pending = b""
        while not self._stop.is_set():
            data = source.read1(want - len(pending))
            if not data:
                return  # parec ended
            pending += data
            if len(pending) < want:
                continue
            chunk = np.frombuffer(pending, dtype=np.int16)
            pending = b""
            try:
                sink.write(to_pcm16(room(chunk)).tobytes())
                sink.flush()
            except (BrokenPipeError, ValueError):
                return  # pacat ended (stop())
            self.chunks += 1

    def say(self, wav: str | Path) -> None:
        """The user speaks: play ``wav`` into the room; return when it has been played."""
        self.audio.play(wav, sink=self.audio.room_sink_name)

    def stop(self) -> None:
        """Stop carrying sound; end the recording and playing processes."""
        self._stop.set()
        for process in (self._record, self._play):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._record = self._play = self._thread = None
