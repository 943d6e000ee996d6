"""Malformed input never crashes the plugin (property-based).

Cases: the mux and ttrpc decoders and the Request/Response parsers raise nothing but ProtocolError
on arbitrary bytes; a live plugin (`NRIPlugin.serve` on a socketpair) fed arbitrary bytes, or
well-framed messages with arbitrary headers, bodies and NRI payloads, returns without raising,
closes its end, and leaves no asyncio error behind; a message it cannot decode makes it close the
connection by itself (without waiting for the peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nrisupport import RecordingHandler

from multinet.errors import ProtocolError
from multinet.nri import NRIPlugin, PluginSettings, mux, ttrpc
from multinet.nri._pb import ttrpc_pb2

FAST = settings(max_examples=300, deadline=None)
LIVE = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = [
    "Configure",
    "Synchronize",
    "StateChange",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "Shutdown",
    "CreateContainer",
    "",
]


@FAST
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_frame_decoder_only_raises_protocol_error(chunks: list[bytes]) -> None:
    dec = mux.FrameDecoder()
    try:
        for chunk in chunks:
            dec.feed(chunk)
    except ProtocolError:
        pass


@FAST
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_message_decoder_only_raises_protocol_error(chunks: list[bytes]) -> None:
    dec = ttrpc.MessageDecoder()
    try:
        for chunk in chunks:
            for msg in dec.feed(chunk):
                assert msg.type in (1, 2, 3)
    except ProtocolError:
        pass


@FAST
@given(st.binary(max_size=256))
def test_envelope_parsers_only_raise_protocol_error(body: bytes) -> None:
    for parse in (ttrpc.parse_request, ttrpc.parse_response):
        with contextlib.suppress(ProtocolError):
            parse(body)


def _request(service: str, method: str, payload: bytes, timeout: int) -> bytes:
    req = ttrpc_pb2.Request(service=service, method=method, payload=payload, timeout_nano=timeout)
    return req.SerializeToString()


requests = st.builds(
    _request,
    st.sampled_from(["nri.pkg.api.v1alpha1.Plugin", "other", ""]),
    st.sampled_from(METHODS),
    st.binary(max_size=200),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
messages = st.builds(
    lambda sid, mtype, flags, body: struct.pack(">IIBB", len(body), sid, mtype, flags) + body,
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 1, 1, 2, 3, 0, 7]),
    st.integers(0, 255),
    st.one_of(requests, st.binary(max_size=100)),
)
frames = st.builds(
    lambda conn, data: struct.pack(">II", conn, len(data)) + data,
    st.sampled_from([1, 1, 2, 0, 5]),
    st.one_of(messages, st.binary(max_size=40)),
)
streams = st.one_of(st.binary(max_size=300), st.lists(frames, max_size=6).map(b"".join))


async def _serve_garbage(data: bytes, *, close_peer: bool) -> tuple[bool, bytes]:
    """Feed `data` to a live plugin; return (serve's result, what the plugin wrote)."""
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: loop_errors.append(ctx))
    ours, theirs = socket.socketpair()
    plugin = NRIPlugin(
        RecordingHandler(), PluginSettings(socket_path="/x", name="fuzz", index="99")
    )
    serving = asyncio.create_task(plugin.serve(*await asyncio.open_unix_connection(sock=ours)))
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    writer.write(data)
    if close_peer:
        writer.write_eof()
    received = b""
    async with asyncio.timeout(5):  # the plugin must close its end
        while chunk := await reader.read(65536):
            received += chunk
        result = await serving
    writer.close()
    await plugin.shutdown()
    assert not plugin.connected
    assert loop_errors == [], loop_errors
    return result, received


@LIVE
@given(streams)
def test_live_plugin_survives_garbage(data: bytes) -> None:
    registered, received = asyncio.run(_serve_garbage(data, close_peer=True))
    assert registered is False
    # Whatever happened, everything the plugin wrote is well-formed and within the frame limit.
    for _, payload in mux.FrameDecoder().feed(received):
        assert len(payload) + mux.HEADER.size <= mux.MAX_FRAME


@LIVE
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 4, 200]), st.binary(max_size=50))
def test_undecodable_message_closes_the_connection_without_waiting(
    stream: int, bad_type: int, body: bytes
) -> None:
    data = mux.encode_frames(1, struct.pack(">IIBB", len(body), stream, bad_type, 0) + body)
    registered, _ = asyncio.run(_serve_garbage(data, close_peer=False))
    assert registered is False


def test_undecodable_request_body_closes_the_connection() -> None:
    data = mux.encode_frames(1, ttrpc.encode_message(1, ttrpc.REQUEST, b"\x0a\xff"))
    assert asyncio.run(_serve_garbage(data, close_peer=False))[0] is False


def test_harness_gets_answers_to_well_formed_requests() -> None:
    """Guards the properties above against passing vacuously: valid requests are answered."""
    configure = _request("nri.pkg.api.v1alpha1.Plugin", "Configure", b"", 0)
    unknown = _request("nri.pkg.api.v1alpha1.Plugin", "CreateContainer", b"", 0)
    data = mux.encode_frames(1, ttrpc.encode_message(1, 1, configure)) + mux.encode_frames(
        1, ttrpc.encode_message(3, 1, unknown)
    )
    _, received = asyncio.run(_serve_garbage(data, close_peer=True))
    replies: dict[int, ttrpc_pb2.Response] = {}
    decoders = {1: ttrpc.MessageDecoder(), 2: ttrpc.MessageDecoder()}
    for conn, payload in mux.FrameDecoder().feed(received):
        for msg in decoders[conn].feed(payload):
            if conn == 1:
                replies[msg.stream_id] = ttrpc.parse_response(msg.body)
    assert replies[1].status.code == 0 and replies[1].payload == b"\x10\x07"  # events = 0x7
    assert replies[3].status.code == ttrpc.UNIMPLEMENTED
