"""Microphone capture: a PortAudio input stream to 16 kHz mono int16 frames on an asyncio queue.

The public face of ``assistant.audio.capture``.
"""

from assistant.audio.capture import (
    PORTAUDIO_PACKAGES,
    InputDevice,
    MicCapture,
    MicError,
    explain_portaudio_error,
    find_input_device,
    list_input_devices,
    rescan_devices,
)

__all__ = [
    "PORTAUDIO_PACKAGES",
    "InputDevice",
    "MicCapture",
    "MicError",
    "explain_portaudio_error",
    "find_input_device",
    "list_input_devices",
    "rescan_devices",
]
