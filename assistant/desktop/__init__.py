"""The desktop voice agent: microphone, VAD, dialogue, display and speech in one process."""
