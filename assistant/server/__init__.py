"""The network edge: one asyncio server for /v1/realtime (WebSocket) and plain HTTP."""
