"""Handler kinds: ``python`` (a callable), ``http`` (a request), ``mqtt`` (a publish)."""

from assistant.tools.handlers.base import Handler

__all__ = ["Handler"]
