"""Malformed input never crashes the plugin (property-based).

Cases: the mux and ttrpc decoders and the Request/Response parsers raise nothing but ProtocolError
on arbitrary bytes; a live plugin (`NRIPlugin.serve` on a socketpair) fed arbitrary bytes, or
well-framed messages with arbitrary headers, bodies and NRI payloads, returns without raising,
closes its end, and leaves no asyncio error behind; a message it cannot decode makes it close the
connection by itself (without waiting for the peer).

Bounded: with `max_concurrent_requests` N, at most N handlers run at once and the others wait and
are served; past `max_pending_requests` a request is answered RESOURCE_EXHAUSTED at once and the
plugin stays connected; a peer that does not even read those answers is cut off; a Synchronize
past `max_sync_pods` or `max_sync_bytes` over its chunks is refused naming the limit, logged,
handed to nobody, and ends the session, while the same chunks under larger caps are served; the
new settings are validated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nrisupport import FakeRuntime, RecordingHandler, plugin_with_fake_runtime, pod_msg, until

from multinet.errors import ConfigError, ProtocolError
from multinet.nri import NRIPlugin, PluginSettings, PodSandbox, mux, ttrpc
from multinet.nri._pb import nri_pb2, ttrpc_pb2
from multinet.nri.ttrpc import RESOURCE_EXHAUSTED, TtrpcError

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


# -- bounded: concurrency, pending requests, Synchronize size ---------------------------------


@dataclass
class _CountingHandler(RecordingHandler):
    """Counts RunPodSandbox handlers running at the same time."""

    running: int = 0
    most: int = 0

    async def on_run_pod_sandbox(self, pod: PodSandbox) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await super().on_run_pod_sandbox(pod)
        finally:
            self.running -= 1


def _run(uid: str) -> bytes:
    return nri_pb2.RunPodSandboxRequest(pod=pod_msg(uid)).SerializeToString()


async def test_requests_beyond_the_concurrency_cap_wait_for_a_slot() -> None:
    handler = _CountingHandler(run_delay=0.3)
    limits = {"max_concurrent_requests": 2, "max_pending_requests": 8}
    async with plugin_with_fake_runtime(handler, **limits) as (plugin, runtime, _):
        await runtime.handshake()
        start = time.monotonic()
        answers = await asyncio.gather(
            *(runtime.call("RunPodSandbox", _run(f"u{i}"), budget=2.0) for i in range(6))
        )
        took = time.monotonic() - start
        assert answers == [b""] * 6  # every pod served, none failed
        assert handler.most == 2
        assert took >= 3 * 0.3 - 0.05, f"6 pods 2 at a time take 3 rounds, took {took:.2f}s"
        assert plugin.connected


async def test_requests_beyond_the_pending_cap_are_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = _CountingHandler(run_delay=0.5)
    limits = {"max_concurrent_requests": 1, "max_pending_requests": 2}
    async with plugin_with_fake_runtime(handler, **limits) as (plugin, runtime, _):
        await runtime.handshake()
        with caplog.at_level(logging.WARNING, logger="multinet.nri.ttrpc"):
            answers = await asyncio.gather(
                *(runtime.call("RunPodSandbox", _run(f"u{i}"), budget=2.0) for i in range(4)),
                return_exceptions=True,
            )
        assert answers[:2] == [b"", b""]
        for refused in answers[2:]:
            assert isinstance(refused, TtrpcError), refused
            assert refused.code == RESOURCE_EXHAUSTED
            assert "2 requests already in flight; retry later" in refused.message
        assert [uid for _, uid in handler.finished] == ["u0", "u1"]
        assert any("RESOURCE_EXHAUSTED" in r.getMessage() for r in caplog.records)
        # The overload is over: the next request is served again.
        assert await runtime.call("RunPodSandbox", _run("u9"), budget=2.0) == b""
        assert plugin.connected


async def test_a_peer_that_does_not_read_its_refusals_is_cut_off() -> None:
    never = asyncio.Event()

    async def send(_data: bytes) -> None:
        await never.wait()  # the peer's socket buffer is full: our replies never leave

    async def handle(_payload: bytes, _ctx: ttrpc.CallContext) -> bytes:
        await never.wait()
        return b""

    server = ttrpc.Server(send, {("s", "m"): handle}, max_concurrent=1, max_pending=1)

    def request(stream: int) -> bytes:
        return ttrpc.encode_message(stream, ttrpc.REQUEST, _request("s", "m", b"", 0))

    server.feed(request(1))  # accepted, running
    server.feed(request(3))  # refused; the refusal waits for the peer to read
    with pytest.raises(ProtocolError, match="without reading the answers"):
        server.feed(request(5))
    assert server.refused == 1
    await server.close()


async def _synchronize(runtime: FakeRuntime, chunks: list[list[nri_pb2.PodSandbox]]) -> None:
    await until(lambda: bool(runtime.registered), 5, "RegisterPlugin")
    cfg = nri_pb2.ConfigureRequest(runtime_name="fake", runtime_version="0", request_timeout=2000)
    await runtime.call("Configure", cfg.SerializeToString())
    for i, pods in enumerate(chunks):
        req = nri_pb2.SynchronizeRequest(pods=pods, more=i < len(chunks) - 1)
        await runtime.call("Synchronize", req.SerializeToString())


def _chunks() -> list[list[nri_pb2.PodSandbox]]:
    return [[pod_msg(f"u{c}{i}") for i in range(3)] for c in range(3)]


def _first_two_chunks_fit(limit: str) -> dict[str, int]:
    """The limit set so that the first two chunks fit exactly and the third goes over."""
    if limit == "max_sync_pods":
        return {limit: 6}
    sizes = [
        len(nri_pb2.SynchronizeRequest(pods=pods, more=True).SerializeToString())
        for pods in _chunks()
    ]
    return {limit: sizes[0] + sizes[1]}


@pytest.mark.parametrize("limit", ["max_sync_pods", "max_sync_bytes"])
async def test_a_synchronize_beyond_its_cap_fails_and_ends_the_session(
    caplog: pytest.LogCaptureFixture, limit: str
) -> None:
    handler = RecordingHandler()
    limits = _first_two_chunks_fit(limit)
    async with plugin_with_fake_runtime(handler, **limits) as (plugin, runtime, serving):
        with caplog.at_level(logging.ERROR, logger="multinet.nri.plugin"):
            with pytest.raises(TtrpcError) as err:
                await _synchronize(runtime, _chunks())
            assert err.value.code == RESOURCE_EXHAUSTED
            assert limit in err.value.message
            async with asyncio.timeout(5):
                assert await serving is False  # not registered: the session ended
        assert handler.syncs == []  # nothing half-collected was handed on
        assert not plugin.connected
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert limit in record.getMessage()


async def test_a_synchronize_within_its_caps_is_served() -> None:
    """Guards the test above against failing for another reason: same chunks, larger caps."""
    handler = RecordingHandler()
    bytes_all = _first_two_chunks_fit("max_sync_bytes")["max_sync_bytes"] * 2
    limits = {"max_sync_pods": 9, "max_sync_bytes": bytes_all}
    async with plugin_with_fake_runtime(handler, **limits) as (plugin, runtime, _):
        await _synchronize(runtime, _chunks())
        await until(lambda: plugin.connected, 5, "connected")
        assert len(handler.syncs[0]) == 9


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"max_concurrent_requests": 10, "max_pending_requests": 5}, "max_concurrent_requests"),
        ({"max_sync_pods": 0}, "max_sync_pods"),
        ({"max_sync_bytes": -1}, "max_sync_bytes"),
    ],
)
def test_limit_settings_are_validated(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PluginSettings(**kwargs)  # type: ignore[arg-type]
