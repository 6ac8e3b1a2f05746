"""Announcing the Wyoming server on the LAN (mDNS ``_wyoming._tcp``), which is how Home
Assistant discovers Wyoming services by itself. Needs the ``zeroconf`` package
(``pip install 'voxtral-assistant[zeroconf]'``).
"""

from __future__ import annotations

import socket
from typing import Any

SERVICE_TYPE = "_wyoming._tcp.local."


class DiscoveryError(Exception):
    """The announcement cannot be made; the message says why."""


def lan_address(host: str) -> str:
    """The address to announce: ``host`` itself, or for a wildcard bind the one the default
    route uses (found without sending anything)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("224.0.0.251", 5353))  # UDP connect only picks a route
        return str(probe.getsockname()[0])
    except OSError as exc:
        raise DiscoveryError(f"no LAN address to announce: {exc}") from None
    finally:
        probe.close()


def service_info(name: str, address: str, port: int) -> Any:
    """The mDNS record of the server (a ``zeroconf.asyncio.AsyncServiceInfo``)."""
    try:
        from zeroconf.asyncio import AsyncServiceInfo
    except ImportError:
        raise DiscoveryError(
            "zeroconf is not installed: pip install 'voxtral-assistant[zeroconf]'"
        ) from None
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        addresses=[socket.inet_pton(_family(address), address)],
        port=port,
        properties={"software": "voxtral-assistant"},
    )


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class Announcement:
    """``async with Announcement(info):`` keeps the record published, withdrawn at the end."""

    def __init__(self, info: Any) -> None:
        self.info = info
        self._zeroconf: Any = None

    async def __aenter__(self) -> Announcement:
        from zeroconf.asyncio import AsyncZeroconf

        self._zeroconf = AsyncZeroconf()
        await self._zeroconf.async_register_service(self.info)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._zeroconf is not None:
            await self._zeroconf.async_unregister_service(self.info)
            await self._zeroconf.async_close()
