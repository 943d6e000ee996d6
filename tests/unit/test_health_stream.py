"""The device health stream on the real DRA server (temporary unix socket), read by a real client.

The source is the agent's real publish loop (host snapshots given as data, the apiserver write
replaced by planning against an empty pool), so the test covers the same wiring as the agent.

Cases: the first response is the complete published list, all HEALTHY with a timeout and a
current timestamp; a change of the published devices is streamed at once; an idle stream
repeats itself (heartbeat) inside the kubelet's timeout; a client cancel ends the handler;
plugin shutdown ends the stream with OK (the kubelet sees EOF, not an error); the registration
lists the health service after the DRAPlugin versions.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpcclient import Stub
from publishdoubles import EmptyPool, Snapshots, StaticNetworks

from multinet.agent.publish import PublishLoop
from multinet.devices.model import HostSnapshot, Link
from multinet.kubelet._pb import dra_health_v1alpha1_pb2 as pb
from multinet.kubelet._pb import pluginregistration_pb2 as reg
from multinet.kubelet.device_health import (
    NOT_WATCHED_MESSAGE,
    DeviceHealthServicer,
    stream_not_opened,
)
from multinet.kubelet.dra import PreparedDevice
from multinet.kubelet.server import KubeletPlugin
from multinet.plans import ClaimRef

ETH0 = Link(index=2, ifname="eth0", mac="02:00:00:00:00:02", up=True, oper_state="up")
NIC_A = Link(index=7, ifname="ens5f0", mac="0c:42:a1:00:00:07", up=True, oper_state="up")
NIC_B = Link(index=8, ifname="ens5f1", mac="0c:42:a1:00:00:08", up=True, oper_state="up")
ROUTES = frozenset({2})
BOTH = HostSnapshot(links=(ETH0, NIC_A, NIC_B), default_route_ifindexes=ROUTES)
ONLY_A = HostSnapshot(links=(ETH0, NIC_A), default_route_ifindexes=ROUTES)


class NoClaims:
    async def prepare(self, claim: ClaimRef) -> Sequence[PreparedDevice]:
        raise AssertionError("no claim is prepared in these tests")

    async def unprepare(self, claim: ClaimRef) -> None:
        raise AssertionError("no claim is unprepared in these tests")


@pytest.fixture
def short_root() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    root = Path(tempfile.mkdtemp(prefix="mn-hl-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Agent:
    publish: PublishLoop
    inventory: Snapshots
    health: DeviceHealthServicer
    plugin: KubeletPlugin
    channel: grpc.aio.Channel

    def watch(
        self,
    ) -> grpc.aio.UnaryStreamCall[pb.NodeWatchResourcesRequest, pb.NodeWatchResourcesResponse]:
        stub = Stub(self.channel, pb, "DRAResourceHealth")
        call: grpc.aio.UnaryStreamCall[
            pb.NodeWatchResourcesRequest, pb.NodeWatchResourcesResponse
        ] = stub.NodeWatchResources(pb.NodeWatchResourcesRequest())
        return call


async def _agent(root: Path, heartbeat: float) -> Agent:
    inventory = Snapshots(BOTH)
    publish = PublishLoop(inventory=inventory, networks=StaticNetworks(), publisher=EmptyPool())
    await publish.publish_once()
    health = DeviceHealthServicer(publish, pool="node-a", heartbeat_seconds=heartbeat)
    plugin = KubeletPlugin(preparer=NoClaims(), kubelet_root=root, health=health)
    await plugin.start()
    channel = grpc.aio.insecure_channel(f"unix://{plugin.dra_socket}")
    return Agent(publish, inventory, health, plugin, channel)


@pytest.fixture
async def agent(short_root: Path) -> AsyncIterator[Agent]:
    a = await _agent(short_root, heartbeat=30.0)  # long: any message within seconds is a change
    yield a
    await a.channel.close()
    await a.plugin.stop(0)


async def _eventually(check: Callable[[], bool], what: str) -> None:
    """Polls `check` for up to 5 s (the handler ends on the server's own schedule)."""
    for _ in range(250):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after 5 s waiting for {what}")


async def _next(
    call: grpc.aio.UnaryStreamCall[pb.NodeWatchResourcesRequest, pb.NodeWatchResourcesResponse],
) -> pb.NodeWatchResourcesResponse:
    async with asyncio.timeout(5):
        message = await call.read()
    assert message is not grpc.aio.EOF, "stream ended early"
    assert isinstance(message, pb.NodeWatchResourcesResponse)
    return message


def _names(message: pb.NodeWatchResourcesResponse) -> set[str]:
    return {d.device.device_name for d in message.devices}


async def test_first_response_is_the_complete_published_list(agent: Agent) -> None:
    published = agent.publish.device_names()
    assert len(published) == 2, published  # both NICs; eth0 carries the default route

    first = await _next(agent.watch())

    assert _names(first) == published
    now = time.time()
    for d in first.devices:
        assert d.device.pool_name == "node-a"
        assert d.health == pb.HEALTHY
        assert d.health_check_timeout_seconds == 60
        assert abs(d.last_updated_time - now) < 5


async def test_a_vanished_device_is_streamed_at_once(agent: Agent) -> None:
    call = agent.watch()
    assert len(_names(await _next(call))) == 2

    agent.inventory.current = ONLY_A  # ens5f1 left the host while in no pod
    await agent.publish.publish_once()

    after = await _next(call)  # well before the 30 s heartbeat
    assert _names(after) == set(agent.publish.device_names())
    assert len(after.devices) == 1


async def test_an_idle_stream_repeats_itself_within_the_timeout(short_root: Path) -> None:
    a = await _agent(short_root, heartbeat=0.2)
    try:
        call = a.watch()
        first, second = await _next(call), await _next(call)
        assert _names(first) == _names(second) == set(a.publish.device_names())
    finally:
        await a.channel.close()
        await a.plugin.stop(0)


async def test_a_client_cancel_ends_the_stream(agent: Agent) -> None:
    call = agent.watch()
    await _next(call)
    assert agent.health.open_streams == 1

    call.cancel()

    await _eventually(lambda: agent.health.open_streams == 0, "the handler to end")
    again = agent.watch()  # the server is unharmed: the kubelet reconnects
    assert len((await _next(again)).devices) == 2


async def test_shutdown_ends_the_stream_with_ok(agent: Agent) -> None:
    call = agent.watch()
    await _next(call)

    await agent.plugin.stop(grace=2.0)

    async with asyncio.timeout(5):
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    assert agent.health.open_streams == 0


async def test_registration_lists_health_after_the_dra_versions(agent: Agent) -> None:
    path = f"unix://{agent.plugin.registration_socket}"
    async with grpc.aio.insecure_channel(path) as channel:
        stub = Stub(channel, reg, "Registration")
        info = await stub.GetInfo(reg.InfoRequest())
    assert list(info.supported_versions) == [
        "v1.DRAPlugin",
        "v1beta1.DRAPlugin",
        "v1alpha1.DRAResourceHealth",
    ]


def test_a_heartbeat_slower_than_the_timeout_is_refused() -> None:
    publish = PublishLoop(
        inventory=Snapshots(BOTH), networks=StaticNetworks(), publisher=EmptyPool()
    )
    with pytest.raises(ValueError, match="heartbeat_seconds"):
        DeviceHealthServicer(publish, pool="node-a", heartbeat_seconds=90, timeout_seconds=60)
    with pytest.raises(ValueError, match="pool name"):
        DeviceHealthServicer(publish, pool="")


async def _registered_now() -> None:
    """The kubelet's registration, already done."""


async def test_a_kubelet_that_opens_the_stream_is_not_reported(agent: Agent) -> None:
    call = agent.watch()
    await _next(call)  # the kubelet (this client) watches
    assert not await stream_not_opened(agent.health, _registered_now(), grace_seconds=5)
    call.cancel()


async def test_a_kubelet_that_never_opens_the_stream_is_reported(agent: Agent) -> None:
    # A kubelet before 1.36 (ResourceHealthStatus off) registers the plugin and never asks.
    assert await stream_not_opened(agent.health, _registered_now(), grace_seconds=0.2)
    assert "ResourceHealthStatus feature gate is off" in NOT_WATCHED_MESSAGE
