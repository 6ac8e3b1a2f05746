"""voxtral-assistant: a real-time streaming voice assistant with function calling on Voxtral."""

__version__ = "0.1.0"
