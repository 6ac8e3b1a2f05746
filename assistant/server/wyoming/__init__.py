"""The Wyoming edge: Home Assistant's speech-to-text, conversation and text-to-speech services.

``WyomingServer`` serves a ``WyomingService`` (the model worker, the tools, the voices, the
conversations) over tcp://, unix:// or stdio://; ``run_wyoming`` is the command's entry point.
"""

from assistant.server.wyoming.server import WyomingServeError, WyomingServer
from assistant.server.wyoming.service import WyomingService
from assistant.server.wyoming.speech import Voices

__all__ = ["Voices", "WyomingServeError", "WyomingServer", "WyomingService"]
