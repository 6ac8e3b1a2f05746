"""Bounds on what clients may make the server hold or do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what clients may make the server hold or do."""

    max_sessions: int = 16
    """Concurrent ``/v1/realtime`` connections; more are closed with 1013."""
    max_message_bytes: int = 4 * 2**20
    """Largest WebSocket message; a larger one closes the connection with 1009."""
    max_incoming_messages: int = 16
    """Messages websockets buffers before it stops reading the socket (back-pressure): with
    ``max_message_bytes`` this bounds a connection's unread input at 64 MiB."""
    max_buffered_audio_s: float = 300.0
    """Uncommitted input audio per connection (manual turn detection)."""
    max_unanswered_audio_s: float = 300.0
    """Committed input audio that may wait for a response, per connection; more is refused."""
    max_unanswered_text_chars: int = 100_000
    """Typed input text that may wait for a response, per connection; more is refused."""
    send_queue_max_bytes: int = 8 * 2**20
    """Outgoing events waiting for a slow client; beyond this it is disconnected (1008)."""
    idle_timeout_s: float = 600.0
    """A connection with no client message and no response for this long is closed."""
    max_request_body_bytes: int = 25 * 2**20
    """Largest ``POST /v1/respond`` body."""
    max_body_bytes_in_flight: int = 100 * 2**20
    """All POST bodies being received at once, by Content-Length; more get 503 (one always fits)."""
    request_timeout_s: float = 10.0
    """Deadline for a request head (and POST body) to arrive."""
    respond_timeout_s: float = 300.0
    """Longest ``POST /v1/respond`` turn."""
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0
    shutdown_grace_s: float = 10.0
    """On shutdown, running responses get this long to finish before they are cancelled."""
