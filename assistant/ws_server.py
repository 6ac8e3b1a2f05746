"""The network edge: one asyncio server for ``/v1/realtime`` (WebSocket) and plain HTTP.

The public face of ``assistant.server``; the implementation is
``assistant.server.assistant_server``.
"""

from assistant.server.assistant_server import (
    AssistantServer,
    SendQueue,
    ServeError,
    ServerLimits,
    check_can_listen,
    listen_failure,
    run_server,
    serve_until_signalled,
)

__all__ = [
    "AssistantServer",
    "SendQueue",
    "ServeError",
    "ServerLimits",
    "check_can_listen",
    "listen_failure",
    "run_server",
    "serve_until_signalled",
]
