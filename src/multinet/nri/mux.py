"""NRI's connection multiplexer: several byte streams over one unix socket.

Protocol: docs/architecture.md, protocols 4.1.

Frame: `[ConnID u32 BE][Length u32 BE][Length bytes]`. No handshake; frames for a ConnID nobody
registered are dropped.

Contract:
- Outgoing data is split into frames of at most `MAX_FRAME` (4096) bytes INCLUDING the 8-byte frame
  header. The runtime reads each frame into a 4096-byte buffer and drops the plugin on a larger one;
  staying under the limit with the header counted is safe whichever way the limit is read.
- Incoming frames of any size up to `MAX_INCOMING_PAYLOAD` are accepted and their payload is handed,
  in order, to the receiver registered for the ConnID. A frame header announcing more is a
  `ProtocolError` (a peer that speaks something else, or garbage); it ends `Mux.run()`.
- `FrameDecoder` is pure (no I/O) so it can be tested byte by byte.

Time budget: decoding/encoding is O(bytes); `send` awaits only the socket's drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

from multinet.errors import ProtocolError

PLUGIN_CONN = 1
"""ConnID of the plugin service: the runtime calls the plugin (plugin = ttrpc server)."""
RUNTIME_CONN = 2
"""ConnID of the runtime service: the plugin calls the runtime (plugin = ttrpc client)."""

HEADER = struct.Struct(">II")
MAX_FRAME = 4096
MAX_PAYLOAD = MAX_FRAME - HEADER.size
# One whole ttrpc message (10-byte header + 4 MiB body) is the most a sane peer puts in one frame.
MAX_INCOMING_PAYLOAD = 10 + 4 * 1024 * 1024

Receiver = Callable[[bytes], None]


def encode_frames(conn_id: int, data: bytes, *, max_payload: int = MAX_PAYLOAD) -> bytes:
    """Frame `data` for `conn_id`, split so that no frame (header included) exceeds MAX_FRAME."""
    if not 0 < conn_id <= 0xFFFFFFFF:
        raise ValueError(f"conn_id {conn_id} out of range 1..2^32-1")
    if not 0 < max_payload <= MAX_PAYLOAD:
        raise ValueError(f"max_payload {max_payload} out of range 1..{MAX_PAYLOAD}")
    view = memoryview(data)
    out = bytearray()
    for start in range(0, len(view), max_payload):
        chunk = view[start : start + max_payload]
        out += HEADER.pack(conn_id, len(chunk))
        out += chunk
    return bytes(out)


class FrameDecoder:
    """Sans-I/O decoder: feed bytes, get `(conn_id, payload)` frames back as they complete."""

    def __init__(self, *, max_payload: int = MAX_INCOMING_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max_payload = max_payload

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buf) >= HEADER.size:
            conn_id, length = HEADER.unpack_from(self._buf)
            if length > self._max_payload:
                raise ProtocolError(
                    f"NRI mux frame for conn {conn_id} announces {length} bytes, "
                    f"more than the {self._max_payload} allowed"
                )
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append((conn_id, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF means a truncated frame)."""
        return len(self._buf)


class Mux:
    """One multiplexed unix-socket connection: demultiplexes into receivers, frames what we send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._receivers: dict[int, Receiver] = {}
        self._decoder = FrameDecoder()
        self.frames_dropped = 0

    def register(self, conn_id: int, receiver: Receiver) -> None:
        """Deliver every payload of `conn_id` to `receiver` (called synchronously, in order)."""
        self._receivers[conn_id] = receiver

    async def send(self, conn_id: int, data: bytes) -> None:
        # One write() call per message: frames of concurrent senders never interleave.
        self._writer.write(encode_frames(conn_id, data))
        await self._writer.drain()

    async def run(self) -> None:
        """Read until EOF. Raises ProtocolError (from the decoder or a receiver) on bad input."""
        while True:
            data = await self._reader.read(65536)
            if not data:
                if self._decoder.pending:
                    raise ProtocolError(
                        f"NRI connection closed inside a frame ({self._decoder.pending} bytes left)"
                    )
                return
            for conn_id, payload in self._decoder.feed(data):
                receiver = self._receivers.get(conn_id)
                if receiver is None:
                    self.frames_dropped += 1
                    continue
                receiver(payload)

    async def close(self) -> None:
        """Close the socket; never raises (the peer may already be gone)."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
