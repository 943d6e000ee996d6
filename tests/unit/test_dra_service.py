"""The real grpclib servers on temporary unix sockets, driven by a real grpc (C core) client.

Cases: registration GetInfo answers as the kubelet expects; NotifyRegistrationStatus is kept;
an empty request succeeds; every claim gets an entry; failures are per-claim error strings;
v1beta1 speaks the same; calls are serialised; an unknown method is UNIMPLEMENTED; sockets:
stale removed, unlinked on stop. Stopping as grpcio's server did: a call in flight gets the
grace to answer, a call that arrives meanwhile is UNAVAILABLE, a call still running after the
grace is answered UNAVAILABLE and the client's connection is closed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpcclient import Stub

from multinet.errors import ConfigError
from multinet.kubelet._pb import dra_health_v1alpha1_pb2 as health_pb
from multinet.kubelet._pb import dra_v1_pb2 as v1
from multinet.kubelet._pb import dra_v1beta1_pb2 as v1beta1
from multinet.kubelet._pb import pluginregistration_pb2 as reg
from multinet.kubelet.dra import PreparedDevice
from multinet.kubelet.server import KubeletPlugin
from multinet.plans import ClaimRef


class FakePreparer:
    """Stands in for the agent: claims named `bad-*` fail with a config error, `boom-*` crash."""

    def __init__(self) -> None:
        self.prepared: list[str] = []
        self.unprepared: list[str] = []
        self.active = 0
        self.max_active = 0

    async def prepare(self, claim: ClaimRef) -> Sequence[PreparedDevice]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.01)  # lets a concurrent call interleave if nothing serialises
            if claim.name.startswith("bad"):
                raise ConfigError(
                    ["config.interfaceName: must be 1-15 characters"],
                    subject=f"claim {claim} request net",
                )
            if claim.name.startswith("boom"):
                raise RuntimeError("kaputt")
            self.prepared.append(claim.uid)
            return [PreparedDevice(("net",), "node-a", "eth-x", share_id="s1")]
        finally:
            self.active -= 1

    async def unprepare(self, claim: ClaimRef) -> None:
        if claim.name.startswith("boom"):
            raise RuntimeError("kaputt")
        self.unprepared.append(claim.uid)


@pytest.fixture
def short_root() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    root = Path(tempfile.mkdtemp(prefix="mn-kl-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def plugin(short_root: Path) -> AsyncIterator[tuple[KubeletPlugin, FakePreparer]]:
    fake = FakePreparer()
    server = KubeletPlugin(preparer=fake, kubelet_root=short_root)
    await server.start()
    yield server, fake
    await server.stop(0)


def _claim(name: str, uid: str, module: ModuleType = v1) -> Any:
    """A `Claim` of the v1 or the v1beta1 messages (two distinct generated classes)."""
    return module.Claim(namespace="ns", name=name, uid=uid)


async def test_get_info_answers_like_a_dra_plugin(
    plugin: tuple[KubeletPlugin, FakePreparer],
) -> None:
    server, _ = plugin
    async with grpc.aio.insecure_channel(f"unix://{server.registration_socket}") as ch:
        stub = Stub(ch, reg, "Registration")
        info = await stub.GetInfo(reg.InfoRequest())
        assert info.type == "DRAPlugin"
        assert info.name == "multinet.dev"
        assert info.endpoint == str(server.dra_socket)
        assert Path(info.endpoint).is_absolute()
        assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
        assert server.registration_socket.name == "multinet.dev-reg.sock"
        assert server.registration_socket.parent.name == "plugins_registry"
        assert server.dra_socket.parent.name == "multinet.dev"

        assert server.registration.status.registered is None
        await stub.NotifyRegistrationStatus(
            reg.RegistrationStatus(plugin_registered=False, error="no")
        )
        assert server.registration.status.registered is False
        assert server.registration.status.error == "no"
        await stub.NotifyRegistrationStatus(reg.RegistrationStatus(plugin_registered=True))
        async with asyncio.timeout(2):
            status = await server.registration.wait_registered()
        assert status.registered is True


async def test_empty_requests_succeed(plugin: tuple[KubeletPlugin, FakePreparer]) -> None:
    server, _ = plugin
    async with grpc.aio.insecure_channel(f"unix://{server.dra_socket}") as ch:
        stub = Stub(ch, v1, "DRAPlugin")
        assert len((await stub.NodePrepareResources(v1.NodePrepareResourcesRequest())).claims) == 0
        resp = await stub.NodeUnprepareResources(v1.NodeUnprepareResourcesRequest())
        assert len(resp.claims) == 0


async def test_every_claim_gets_an_entry_with_its_own_error(
    plugin: tuple[KubeletPlugin, FakePreparer],
) -> None:
    server, fake = plugin
    claims = [_claim("good", "u1"), _claim("bad", "u2"), _claim("boom", "u3"), _claim("ok", "u4")]
    async with grpc.aio.insecure_channel(f"unix://{server.dra_socket}") as ch:
        stub = Stub(ch, v1, "DRAPlugin")
        resp = await stub.NodePrepareResources(v1.NodePrepareResourcesRequest(claims=claims))
    assert set(resp.claims) == {"u1", "u2", "u3", "u4"}
    good = resp.claims["u1"]
    assert good.error == ""
    assert [
        (list(d.request_names), d.pool_name, d.device_name, d.share_id) for d in good.devices
    ] == [(["net"], "node-a", "eth-x", "s1")]
    assert resp.claims["u2"].error == (
        "claim ns/bad request net: config.interfaceName: must be 1-15 characters"
    )
    assert not resp.claims["u2"].devices
    assert "ns/boom" in resp.claims["u3"].error and "kaputt" in resp.claims["u3"].error
    assert resp.claims["u4"].error == ""
    assert fake.prepared == ["u1", "u4"]


async def test_unprepare_reports_per_claim(plugin: tuple[KubeletPlugin, FakePreparer]) -> None:
    server, fake = plugin
    claims = [_claim("a", "u1"), _claim("boom", "u2")]
    async with grpc.aio.insecure_channel(f"unix://{server.dra_socket}") as ch:
        stub = Stub(ch, v1, "DRAPlugin")
        resp = await stub.NodeUnprepareResources(v1.NodeUnprepareResourcesRequest(claims=claims))
    assert resp.claims["u1"].error == ""
    assert "kaputt" in resp.claims["u2"].error
    assert fake.unprepared == ["u1"]


async def test_v1beta1_is_served_without_share_id(
    plugin: tuple[KubeletPlugin, FakePreparer],
) -> None:
    server, _ = plugin
    claims = [_claim("good", "u1", v1beta1), _claim("bad", "u2", v1beta1)]
    async with grpc.aio.insecure_channel(f"unix://{server.dra_socket}") as ch:
        stub = Stub(ch, v1beta1, "DRAPlugin")
        resp = await stub.NodePrepareResources(v1beta1.NodePrepareResourcesRequest(claims=claims))
        assert [d.device_name for d in resp.claims["u1"].devices] == ["eth-x"]
        assert "config.interfaceName" in resp.claims["u2"].error
        un = await stub.NodeUnprepareResources(v1beta1.NodeUnprepareResourcesRequest(claims=claims))
        assert {k: v.error for k, v in un.claims.items()} == {"u1": "", "u2": ""}


async def test_concurrent_calls_are_serialised(plugin: tuple[KubeletPlugin, FakePreparer]) -> None:
    server, fake = plugin
    async with grpc.aio.insecure_channel(f"unix://{server.dra_socket}") as ch:
        v1stub = Stub(ch, v1, "DRAPlugin")
        betastub = Stub(ch, v1beta1, "DRAPlugin")
        await asyncio.gather(
            *(
                v1stub.NodePrepareResources(
                    v1.NodePrepareResourcesRequest(claims=[_claim(f"c{i}", f"u{i}")])
                )
                for i in range(5)
            ),
            *(
                betastub.NodePrepareResources(
                    v1beta1.NodePrepareResourcesRequest(claims=[_claim(f"d{i}", f"w{i}", v1beta1)])
                )
                for i in range(5)
            ),
        )
    assert len(fake.prepared) == 10
    assert fake.max_active == 1


async def test_an_unserved_method_is_unimplemented(
    plugin: tuple[KubeletPlugin, FakePreparer],
) -> None:
    # Kubelet 1.36 opens the health stream on every driver's socket; unserved, it must read
    # UNIMPLEMENTED (this plugin was made without the health service).
    server, _ = plugin
    async with grpc.aio.insecure_channel(f"unix://{server.dra_socket}") as ch:
        call = Stub(ch, health_pb, "DRAResourceHealth").NodeWatchResources(
            health_pb.NodeWatchResourcesRequest()
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


class GatedPreparer(FakePreparer):
    """Prepares once `gate` is set; `entered` tells that a call is in the preparer."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def prepare(self, claim: ClaimRef) -> Sequence[PreparedDevice]:
        self.entered.set()
        await self.gate.wait()
        return await super().prepare(claim)


async def _eventually(check: Callable[[], bool], what: str) -> None:
    """Polls `check` for up to 5 s."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after 5 s waiting for {what}")


async def test_stop_lets_a_call_in_flight_answer_and_refuses_new_ones(short_root: Path) -> None:
    fake = GatedPreparer()
    plugin = KubeletPlugin(preparer=fake, kubelet_root=short_root)
    await plugin.start()
    async with grpc.aio.insecure_channel(f"unix://{plugin.dra_socket}") as ch:
        stub = Stub(ch, v1, "DRAPlugin")
        in_flight = stub.NodePrepareResources(
            v1.NodePrepareResourcesRequest(claims=[_claim("a", "u1")])
        )
        await fake.entered.wait()
        stopping = asyncio.create_task(plugin.stop(grace=10))
        # stop() is under way: the socket goes first
        await _eventually(lambda: not plugin.dra_socket.exists(), "the DRA socket to go")
        assert not plugin.registration_socket.exists()

        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.NodePrepareResources(v1.NodePrepareResourcesRequest())
        assert late.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not stopping.done()

        fake.gate.set()
        assert (await in_flight).claims["u1"].devices[0].device_name == "eth-x"
        async with asyncio.timeout(5):
            await stopping


async def test_stop_cancels_what_outlives_the_grace_and_closes_connections(
    short_root: Path,
) -> None:
    fake = GatedPreparer()  # never opened: the call outlives any grace
    plugin = KubeletPlugin(preparer=fake, kubelet_root=short_root)
    await plugin.start()
    async with grpc.aio.insecure_channel(f"unix://{plugin.dra_socket}") as ch:
        in_flight = Stub(ch, v1, "DRAPlugin").NodePrepareResources(
            v1.NodePrepareResourcesRequest(claims=[_claim("a", "u1")])
        )
        await fake.entered.wait()
        assert ch.get_state() == grpc.ChannelConnectivity.READY
        async with asyncio.timeout(5):
            await plugin.stop(grace=0.2)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await in_flight
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert err.value.details() == "Cancelling all calls"  # grpcio's server said the same
        async with asyncio.timeout(5):  # the server hung up: the channel leaves READY
            await ch.wait_for_state_change(grpc.ChannelConnectivity.READY)
    assert fake.prepared == []


async def test_stale_sockets_are_replaced_and_removed_on_stop(short_root: Path) -> None:
    plugin = KubeletPlugin(preparer=FakePreparer(), kubelet_root=short_root)
    for path in (plugin.registration_socket, plugin.dra_socket):
        path.parent.mkdir(parents=True, exist_ok=True)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))  # bound, never listening: what a crashed process leaves behind
        stale.close()
        assert path.exists()
    await plugin.start()
    try:
        async with grpc.aio.insecure_channel(f"unix://{plugin.registration_socket}") as ch:
            info = await Stub(ch, reg, "Registration").GetInfo(reg.InfoRequest())
            assert info.name == "multinet.dev"
    finally:
        await plugin.stop(0)
    assert not plugin.registration_socket.exists()
    assert not plugin.dra_socket.exists()
    await plugin.stop(0)  # idempotent


async def test_a_regular_file_in_the_socket_place_is_not_deleted(short_root: Path) -> None:
    plugin = KubeletPlugin(preparer=FakePreparer(), kubelet_root=short_root)
    plugin.dra_socket.parent.mkdir(parents=True)
    plugin.dra_socket.write_text("precious")
    with pytest.raises(FileExistsError, match="not a socket"):
        await plugin.start()
    await plugin.stop(0)
    assert plugin.dra_socket.read_text() == "precious"
