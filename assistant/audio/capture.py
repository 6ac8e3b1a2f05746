"""Microphone capture: a PortAudio input stream as 16 kHz mono int16 frames on asyncio.

``async with MicCapture("pulse") as mic: async for frame in mic: ...`` yields frames of
``frame_ms`` milliseconds. The device is opened at 16 kHz mono when it supports that, otherwise
at its own default rate (and channel count if mono is refused); the audio is then mixed down to
mono and resampled with soxr.

Threads: PortAudio calls ``_on_audio`` on its own thread. That callback never waits: it copies
the block and hands it to the event loop with ``call_soon_threadsafe``. Frames wait on a bounded
queue; when it is full the oldest frame is dropped and counted (``dropped_frames``), and blocks
that the loop has not even picked up yet are bounded the same way, so a stalled consumer or a
blocked loop costs audio, never memory. PortAudio's own overflow flags count in ``overflows``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from assistant.audio.closing import close_bounded
from assistant.audio.io import StreamResampler, float_to_pcm16, stream_resampler
from assistant.events import SAMPLE_RATE_HZ

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
"""How long ``stop()`` waits for PortAudio to let go of the device."""

PORTAUDIO_PACKAGES = (
    "apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio (macOS)"
)

# PortAudio error codes (portaudio.h) that have a clearer explanation than PortAudio's text.
_PA_UNSUPPORTED = {
    -9998: "channel count",
    -9997: "sample rate",
    -9994: "sample format",
}
_PA_INVALID_DEVICE = -9996
_PA_DEVICE_UNAVAILABLE = -9985


class MicError(RuntimeError):
    """The microphone cannot be used; the message says why and what to do about it."""


@dataclass(frozen=True, slots=True)
class InputDevice:
    """One PortAudio device that can record."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    default_sample_rate_hz: int
    is_default: bool


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:
        raise MicError(
            f"the PortAudio library was not found ({exc}): {PORTAUDIO_PACKAGES}"
        ) from None
    module: ModuleType = sounddevice
    return module


def list_input_devices() -> list[InputDevice]:
    """Every device PortAudio can record from, the default input marked."""
    sd = _sounddevice()
    host_apis = sd.query_hostapis()
    default_input = sd.default.device[0]
    return [
        InputDevice(
            index=info["index"],
            name=info["name"],
            host_api=host_apis[info["hostapi"]]["name"],
            max_input_channels=info["max_input_channels"],
            default_sample_rate_hz=round(info["default_samplerate"]),
            is_default=info["index"] == default_input,
        )
        for info in sd.query_devices()
        if info["max_input_channels"] > 0
    ]


def rescan_devices() -> None:
    """Make PortAudio enumerate devices again (it does so once, when first imported).

    Needed after a sound server appears or a device is plugged in; no stream may be open.
    """
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()


def find_input_device(device: int | str | None = None) -> InputDevice:
    """The input device for an index, a name (exact, else a unique substring) or the default."""
    devices = list_input_devices()
    if not devices:
        raise MicError(
            "no input device found: connect a microphone, or check that the sound server "
            "(PulseAudio/PipeWire) is running"
        )
    names = ", ".join(f"{d.index}: {d.name!r}" for d in devices)
    if device is None:
        default = [d for d in devices if d.is_default]
        return default[0] if default else devices[0]
    if isinstance(device, int):
        matches = [d for d in devices if d.index == device]
    else:
        matches = [d for d in devices if d.name == device] or [
            d for d in devices if device.lower() in d.name.lower()
        ]
    if not matches:
        raise MicError(f"no input device matches {device!r}; input devices are {names}")
    if len(matches) > 1:
        found = ", ".join(f"{d.index}: {d.name!r}" for d in matches)
        raise MicError(f"{device!r} matches several input devices ({found}); give the index")
    return matches[0]


def explain_portaudio_error(exc: Exception, device: InputDevice) -> MicError:
    """Turn PortAudio's failure to open ``device`` into a ``MicError`` saying what to do."""
    code = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
    text = str(exc.args[0]) if exc.args else str(exc)
    name = f"input device {device.index} ({device.name!r})"
    if code == _PA_DEVICE_UNAVAILABLE or "busy" in text.lower():
        return MicError(f"{name} is busy or unavailable; close the program using it ({text})")
    if code in _PA_UNSUPPORTED:
        return MicError(f"{name} does not support the requested {_PA_UNSUPPORTED[code]} ({text})")
    if code == _PA_INVALID_DEVICE:
        return MicError(f"{name} is gone; run `voxtral-assistant devices` to list devices")
    return MicError(f"cannot open {name}: {text}")


class MicCapture:
    """A microphone as an async iterator of 16 kHz mono int16 frames of ``frame_ms``.

    ``device``: index, name or name substring; the default input device when None.
    ``max_queue_frames``: frames kept for a slow consumer before the oldest are dropped.
    ``capture_rate_hz`` / ``channels``: force what is asked of the device (otherwise 16 kHz
    mono when supported, else the device's default rate).
    ``stall_timeout_s``: a reader waiting this long without any audio gets ``MicError`` (a
    device that dropped out without PortAudio ending the stream); None waits forever.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        frame_ms: int = 20,
        max_queue_frames: int = 250,
        capture_rate_hz: int | None = None,
        channels: int | None = None,
        stall_timeout_s: float | None = 5.0,
    ) -> None:
        if frame_ms <= 0 or SAMPLE_RATE_HZ * frame_ms % 1000:
            raise ValueError(f"frame_ms must be a positive whole number of ms, not {frame_ms}")
        if max_queue_frames < 1:
            raise ValueError(f"max_queue_frames must be at least 1, not {max_queue_frames}")
        if stall_timeout_s is not None and stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be positive or None, not {stall_timeout_s}")
        self.requested_device = device
        self.stall_timeout_s = stall_timeout_s
        self.frame_ms = frame_ms
        self.frame_samples = SAMPLE_RATE_HZ * frame_ms // 1000
        self.max_queue_frames = max_queue_frames
        self._capture_rate_hz = capture_rate_hz
        self._channels = channels
        self.device: InputDevice | None = None
        """The device in use, once started."""
        self.capture_rate_hz = 0
        """The rate the device delivers, once started (resampled to 16 kHz when different)."""
        self.capture_channels = 0
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._ready = asyncio.Event()
        self._lock = threading.Lock()
        self._in_flight_blocks = 0
        self._queue_dropped = 0
        self._callback_dropped_samples = 0
        self._overflows = 0
        self._leftover = np.zeros(0, dtype=np.int16)
        self._stream: Any = None
        self._resampler: StreamResampler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopping = False
        self._ended = False
        self._failure: MicError | None = None

    @property
    def dropped_frames(self) -> int:
        """Frames lost because the consumer (or the event loop) fell behind."""
        with self._lock:
            late = self._callback_dropped_samples
        if self.capture_rate_hz:
            late = late * SAMPLE_RATE_HZ // self.capture_rate_hz
        return self._queue_dropped + late // self.frame_samples

    @property
    def overflows(self) -> int:
        """Blocks that PortAudio flagged as overflowed (audio lost before it reached us)."""
        with self._lock:
            return self._overflows

    @property
    def queued_frames(self) -> int:
        """Frames waiting for the consumer."""
        return len(self._queue)

    async def start(self) -> MicCapture:
        """Open the device and start capturing (once per ``MicCapture``)."""
        if self._stream is not None or self._ended:
            raise RuntimeError("a MicCapture starts once; make a new one to capture again")
        sd = _sounddevice()
        self._loop = asyncio.get_running_loop()
        device = find_input_device(self.requested_device)
        rate_hz, channels = self._choose_format(sd, device)
        self._resampler = stream_resampler(rate_hz, "float32")
        self.device, self.capture_rate_hz, self.capture_channels = device, rate_hz, channels
        try:
            self._stream = await asyncio.to_thread(self._open, sd, device, rate_hz, channels)
        except sd.PortAudioError as exc:
            raise explain_portaudio_error(exc, device) from exc
        self._started = True
        return self

    def _open(self, sd: ModuleType, device: InputDevice, rate_hz: int, channels: int) -> Any:
        """Open and start the stream (blocking: PortAudio may take a while on some hosts)."""
        stream = sd.InputStream(
            device=device.index,
            samplerate=rate_hz,
            channels=channels,
            dtype="float32",
            blocksize=rate_hz * self.frame_ms // 1000,
            # A voice assistant wants each block at once, not in large buffered bursts.
            latency="low",
            callback=self._on_audio,
            finished_callback=self._on_finished,
        )
        try:
            stream.start()
        except BaseException:
            stream.close()
            raise
        return stream

    def _choose_format(self, sd: ModuleType, device: InputDevice) -> tuple[int, int]:
        if self._channels is not None and self._channels > device.max_input_channels:
            raise MicError(
                f"input device {device.index} ({device.name!r}) has at most "
                f"{device.max_input_channels} input channels, not {self._channels}"
            )
        if self._capture_rate_hz is not None:
            candidates = [(self._capture_rate_hz, self._channels or 1)]
        else:
            native = device.default_sample_rate_hz
            channels = [self._channels] if self._channels else [1, device.max_input_channels]
            candidates = [(rate, ch) for rate in (SAMPLE_RATE_HZ, native) for ch in channels]
        refusals: list[Exception] = []
        for rate_hz, ch in candidates:
            try:
                sd.check_input_settings(
                    device=device.index, samplerate=rate_hz, channels=ch, dtype="float32"
                )
            except sd.PortAudioError as exc:
                refusals.append(exc)
                continue
            return rate_hz, ch
        raise explain_portaudio_error(refusals[-1], device)

    async def stop(self) -> None:
        """Stop capturing; frames already queued can still be read, then iteration ends."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._stopping = True

        def close() -> None:
            try:
                # abort, not stop: an input stream has nothing worth draining, and stop() waits
                # for the device, which a stalled one never answers (43 s on PulseAudio).
                stream.abort()
            except Exception as exc:  # a device already gone: closing is all that is left
                log.debug("aborting the input stream failed: %s", exc)
            finally:
                stream.close()

        try:
            await close_bounded(close, "the microphone", CLOSE_TIMEOUT_S)
        finally:
            self._end(None)

    async def __aenter__(self) -> MicCapture:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __aiter__(self) -> MicCapture:
        return self

    async def __anext__(self) -> np.ndarray:
        if not self._started:
            raise RuntimeError(
                "the MicCapture is not running: use `async with MicCapture(...) as mic:` "
                "(or await mic.start()) before reading frames"
            )
        while not self._queue:
            if self._ended:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self.stall_timeout_s)
            except TimeoutError:  # TimeoutError itself only from Python 3.11
                if self._queue or self._ended:
                    continue  # audio (or the end) arrived as the wait ran out
                name = self.device.name if self.device else "?"
                raise MicError(
                    f"input device {name!r} stopped delivering audio "
                    f"(nothing for {self.stall_timeout_s:g} s; unplugged or suspended?)"
                ) from None
        return self._queue.popleft()

    # --- PortAudio's thread ----------------------------------------------------------------

    def _on_audio(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with self._lock:
            if status.input_overflow:
                self._overflows += 1
            # Bound what waits for the loop too: a blocked loop must not grow memory.
            if self._in_flight_blocks >= self.max_queue_frames:
                self._callback_dropped_samples += frames
                return
            self._in_flight_blocks += 1
        try:
            loop.call_soon_threadsafe(self._on_block, indata.copy())
        except RuntimeError:
            # The loop is closed: nobody listens any more.
            with self._lock:
                self._in_flight_blocks -= 1

    def _on_finished(self) -> None:
        if self._stopping or self._loop is None:
            return
        name = self.device.name if self.device else "?"
        failure = MicError(f"input device {name!r} stopped delivering audio (unplugged?)")
        try:
            self._loop.call_soon_threadsafe(self._end, failure)
        except RuntimeError:
            return

    # --- the event loop ----------------------------------------------------------------------

    def _on_block(self, block: np.ndarray) -> None:
        with self._lock:
            self._in_flight_blocks -= 1
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        if self._resampler is not None:
            mono = self._resampler(mono)
        pcm = float_to_pcm16(mono)
        if len(self._leftover):
            pcm = np.concatenate([self._leftover, pcm])
        n = self.frame_samples
        whole = len(pcm) - len(pcm) % n
        self._leftover = pcm[whole:]
        for offset in range(0, whole, n):
            if len(self._queue) >= self.max_queue_frames:
                self._queue.popleft()
                self._queue_dropped += 1
            self._queue.append(pcm[offset : offset + n])
        if whole:
            self._ready.set()

    def _end(self, failure: MicError | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._failure = failure
        self._ready.set()
