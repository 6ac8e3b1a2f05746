"""The network edge: one asyncio server for ``/v1/realtime`` (WebSocket) and plain HTTP.

The public face of ``assistant.server``: ``AssistantServer`` (``assistant_server``), its
connections (``connection``, ``send_queue``) and the wiring from settings to a running server
(``wiring``); its limits are ``assistant.config.ServerSettings``.
"""

from assistant.config import ServerSettings
from assistant.server.assistant_server import AssistantServer, ServeError, listen_failure
from assistant.server.send_queue import SendQueue
from assistant.server.wiring import check_can_listen, run_server, serve_until_signalled

__all__ = [
    "AssistantServer",
    "SendQueue",
    "ServeError",
    "ServerSettings",
    "check_can_listen",
    "listen_failure",
    "run_server",
    "serve_until_signalled",
]
