"""A minimal HTTP liveness endpoint (``GET /healthz`` -> 200) on the asyncio loop.

It answers while the event loop runs, on standbys too (a standby waiting for the Lease is healthy).
Hand-rolled on ``asyncio.start_server`` to add no web framework for one fixed response.
"""

from __future__ import annotations

import asyncio

_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        parts = line.split()
        writer.write(
            _OK if len(parts) >= 2 and parts[1] in (b"/healthz", b"/livez") else _NOT_FOUND
        )
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, host: str = "0.0.0.0") -> asyncio.Server | None:
    """Start serving; ``port`` 0 disables the endpoint."""
    if not port:
        return None
    return await asyncio.start_server(_serve, host, port)
