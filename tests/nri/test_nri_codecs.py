"""Mux framing and ttrpc message codecs, and the ttrpc client/server over a real socketpair.

Cases: frames round-trip; outgoing data is split into frames of at most 4096 bytes (header
included) and reassembled; incoming frames of any size are accepted; byte-at-a-time feeding; a
frame or message announcing an impossible length is a ProtocolError; client stream ids are
1, 3, 5; the server answers unknown methods with 12, handler errors with their message, honours
timeout_nano; a reply larger than 4096 bytes leaves the socket in frames of at most 4096 bytes;
work a handler leaves for after its answer (`answered()`) runs once the answer is written, also
when it is a deadline error, and when the call is dropped with its connection.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from nrisupport import until

from multinet.errors import ProtocolError
from multinet.nri import mux, ttrpc
from multinet.nri._pb import ttrpc_pb2


def test_frame_header_is_connid_then_length_big_endian() -> None:
    assert mux.encode_frames(2, b"abc") == b"\x00\x00\x00\x02\x00\x00\x00\x03abc"


@pytest.mark.parametrize("size", [0, 1, 4088, 4089, 4096, 10_000, 100_000])
def test_outgoing_split_into_frames_of_at_most_4096_bytes(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    wire = mux.encode_frames(1, data)
    frames = mux.FrameDecoder().feed(wire)
    sizes = [mux.HEADER.size + len(p) for _, p in frames]
    assert all(s <= 4096 for s in sizes), sizes
    assert b"".join(p for _, p in frames) == data
    assert len(frames) == -(-size // 4088)  # as few frames as the limit allows


def test_incoming_frames_of_any_size_and_byte_at_a_time() -> None:
    big = b"x" * 70_000
    wire = struct.pack(">II", 1, len(big)) + big + struct.pack(">II", 7, 2) + b"hi"
    dec = mux.FrameDecoder()
    got: list[tuple[int, bytes]] = []
    for i in range(len(wire)):
        got += dec.feed(wire[i : i + 1])
    assert got == [(1, big), (7, b"hi")]
    assert dec.pending == 0


def test_frame_announcing_more_than_a_message_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="announces"):
        mux.FrameDecoder().feed(struct.pack(">II", 1, 0xFFFFFFFF))


def test_ttrpc_header_layout() -> None:
    raw = ttrpc.encode_message(5, ttrpc.RESPONSE, b"body", flags=0)
    assert raw == b"\x00\x00\x00\x04\x00\x00\x00\x05\x02\x00body"
    assert ttrpc.MessageDecoder().feed(raw) == [ttrpc.Message(5, ttrpc.RESPONSE, 0, b"body")]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (struct.pack(">IIBB", 4 * 1024 * 1024 + 1, 1, 1, 0), "4 MiB"),
        (struct.pack(">IIBB", 0, 1, 9, 0), "unknown type 9"),
    ],
)
def test_ttrpc_decoder_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        ttrpc.MessageDecoder().feed(raw)


def test_undecodable_request_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="undecodable ttrpc Request"):
        ttrpc.parse_request(b"\x0a\xff")  # a length-delimited field running past the end


async def _pair() -> tuple[mux.Mux, asyncio.StreamReader, asyncio.StreamWriter]:
    a, b = socket.socketpair()
    m = mux.Mux(*await asyncio.open_unix_connection(sock=a))
    reader, writer = await asyncio.open_unix_connection(sock=b)
    return m, reader, writer


async def _read_frames(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    dec = mux.FrameDecoder()
    frames: list[tuple[int, bytes]] = []
    while len(frames) < count:
        data = await reader.read(65536)
        assert data, "connection closed early"
        frames += dec.feed(data)
    return frames


async def test_server_over_socket_replies_and_splits_large_replies() -> None:
    big = bytes(range(256)) * 40  # 10240 bytes

    async def echo(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
        return big if payload == b"big" else payload

    async def fail(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
        raise ValueError("claim default/c1 device eth9: no such interface")

    async def slow(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
        await asyncio.sleep(5)
        return b""

    server_mux, reader, writer = await _pair()
    handlers = {("svc", "Echo"): echo, ("svc", "Fail"): fail, ("svc", "Slow"): slow}
    server = ttrpc.Server(lambda d: server_mux.send(1, d), handlers)
    server_mux.register(1, server.feed)
    running = asyncio.create_task(server_mux.run())
    stream = iter(range(1, 100, 2))

    async def call(method: str, payload: bytes, budget: float | None = None) -> None:
        req = ttrpc_pb2.Request(service="svc", method=method, payload=payload)
        if budget is not None:
            req.timeout_nano = int(budget * 1e9)
        await _write(writer, ttrpc.encode_message(next(stream), 1, req.SerializeToString()))

    try:
        await call("Echo", b"big")
        frames = await _read_frames(reader, 3)
        assert all(cid == 1 and len(p) + 8 <= 4096 for cid, p in frames)
        msgs = ttrpc.MessageDecoder().feed(b"".join(p for _, p in frames))
        assert [(m.stream_id, m.type) for m in msgs] == [(1, ttrpc.RESPONSE)]
        assert ttrpc_pb2.Response.FromString(msgs[0].body).payload == big

        statuses = {}
        for method, payload, budget in [
            ("Nope", b"", None),
            ("Fail", b"", None),
            ("Slow", b"", 0.1),
        ]:
            await call(method, payload, budget)
            ((_, body),) = await _read_frames(reader, 1)
            (msg,) = ttrpc.MessageDecoder().feed(body)
            statuses[method] = (msg.stream_id, ttrpc_pb2.Response.FromString(msg.body).status)
        assert statuses["Nope"][0] == 3 and statuses["Nope"][1].code == ttrpc.UNIMPLEMENTED
        assert statuses["Fail"][0] == 5 and statuses["Fail"][1].code == ttrpc.UNKNOWN
        assert statuses["Fail"][1].message == "claim default/c1 device eth9: no such interface"
        assert statuses["Slow"][1].code == ttrpc.DEADLINE_EXCEEDED
    finally:
        writer.close()
        await asyncio.wait({running}, timeout=5)
        await server.close()
        await server_mux.close()
    assert running.done() and running.exception() is None


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(mux.encode_frames(1, data))
    await writer.drain()


async def test_client_streams_are_odd_and_errors_are_raised() -> None:
    sent: list[ttrpc.Message] = []
    client: ttrpc.Client

    async def capture(data: bytes) -> None:
        (msg,) = ttrpc.MessageDecoder().feed(data)
        sent.append(msg)
        req = ttrpc.parse_request(msg.body)
        resp = ttrpc_pb2.Response(payload=req.payload[::-1])
        if req.method == "Bad":
            resp.status.code, resp.status.message = 12, "nope"
        client.feed(ttrpc.encode_message(msg.stream_id, ttrpc.RESPONSE, resp.SerializeToString()))

    client = ttrpc.Client(capture)
    assert await client.call("s", "M", b"abc", budget=1.5) == b"cba"
    assert await client.call("s", "M", b"xy") == b"yx"
    with pytest.raises(ttrpc.TtrpcError) as err:
        await client.call("s", "Bad", b"")
    assert (err.value.code, err.value.message) == (12, "nope")
    assert [m.stream_id for m in sent] == [1, 3, 5]
    assert ttrpc.parse_request(sent[0].body).timeout_nano == 1_500_000_000
    client.close(ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        await client.call("s", "M", b"")


def test_client_drops_responses_for_unknown_streams() -> None:
    client = ttrpc.Client(lambda d: asyncio.sleep(0))
    client.feed(ttrpc.encode_message(99, ttrpc.RESPONSE, b""))  # no exception, nothing pending


async def test_work_left_for_after_the_answer_runs_once_it_is_written() -> None:
    events: list[str] = []
    later: list[asyncio.Task[None]] = []

    async def handler(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
        answer = ttrpc.answered()

        async def after() -> None:
            await answer
            events.append(f"after {ctx.method}")

        later.append(asyncio.create_task(after()))
        await asyncio.sleep(0.05 if payload == b"" else 5)  # time enough to run too early
        events.append(f"handled {ctx.method}")
        return b"ok"

    async def send(data: bytes) -> None:
        (msg,) = ttrpc.MessageDecoder().feed(data)
        events.append(f"answered {msg.stream_id}")

    server = ttrpc.Server(send, {("svc", "Quick"): handler, ("svc", "Late"): handler})

    def call(stream: int, method: str, payload: bytes, budget: float) -> None:
        req = ttrpc_pb2.Request(service="svc", method=method, payload=payload)
        req.timeout_nano = int(budget * 1e9)
        server.feed(ttrpc.encode_message(stream, ttrpc.REQUEST, req.SerializeToString()))

    call(1, "Quick", b"", 5)
    await until(lambda: len(later) == 1, 2, "the first handler")
    await asyncio.wait_for(later[0], 2)
    assert events == ["handled Quick", "answered 1", "after Quick"]
    events.clear()
    call(3, "Late", b"slow", 0.1)  # answered DEADLINE_EXCEEDED while the handler still runs
    await until(lambda: len(later) == 2, 2, "the second handler")
    await asyncio.wait_for(later[1], 2)
    assert events == ["answered 3", "after Late"]
    events.clear()
    call(5, "Late", b"slow", 10)
    await until(lambda: len(later) == 3, 2, "the third handler")
    await server.close()  # the connection is gone: no answer, but nothing waits forever
    await asyncio.wait_for(later[2], 2)
    assert events == ["after Late"]
    done = ttrpc.answered()  # outside of any call: done at once
    assert done.done() and done.result() is None
