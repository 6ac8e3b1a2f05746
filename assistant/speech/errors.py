"""The one error of the speech stage."""


class SpeechError(RuntimeError):
    """Speech cannot be produced or played; the message says why and what to do."""
