"""ClaimPreparer on a real veth "NIC" and a real checkpoint file.

The API reads and the IPReservation store are replaced by Fake* doubles here (the cluster tests
in tests/cluster/test_prepare.py run the same code against the real apiserver); the host state
is read from the kernel and the checkpoint is the real file.

Cases: host-device with IPAM none carries the NIC's addresses and records its host state;
subrequest names are stripped for the kubelet; pool IPAM reserves and unprepare releases, also
from a restarted agent; a bad claim config names claim, request and field and leaves nothing
behind; unallocated / recreated claims are refused; prepare and unprepare are idempotent;
unprepare waits while the interface is still in a pod.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from doubles import NODE, FakeDirectory, FakeLookups, FakeReservations, claim_doc
from helpers import NicFactory

from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.checkpoint import Checkpoint, load_state
from multinet.errors import ClaimError, ConfigError
from multinet.netlink.hoststate import read_host_state
from multinet.plans import Attachment, ClaimRef

pytestmark = pytest.mark.root


def _setup(
    tmp_path: Path, ifname: str, network: dict[str, Any]
) -> tuple[ClaimPreparer, FakeLookups, FakeReservations, Checkpoint]:
    lookups = FakeLookups({"net-a": network})
    reservations = FakeReservations()
    checkpoint = Checkpoint.open(tmp_path)
    preparer = ClaimPreparer(
        node_name=NODE,
        checkpoint=checkpoint,
        lookups=lookups,
        devices=FakeDirectory({"dev-a": DirectoryEntry(ifname=ifname, network="net-a")}),
        reservations=reservations,
        read_host=read_host_state,
    )
    return preparer, lookups, reservations, checkpoint


REF = ClaimRef(namespace="ns", name="c1", uid="uid-1")


async def test_host_device_with_ipam_none_carries_the_nic_addresses(
    make_nic: NicFactory, tmp_path: Path
) -> None:
    nic = make_nic(prefix="mnprep", addresses=("198.51.100.7/24",), mtu=1400)
    preparer, lookups, _, checkpoint = _setup(
        tmp_path, nic.name, {"interfaces": {"names": [nic.name]}, "interfaceName": "net1"}
    )
    lookups.claims[("ns", "c1")] = claim_doc(REF, "dev-a", request="nic/fast")
    devices = await preparer.prepare(REF)
    assert [(d.request_names, d.pool_name, d.device_name) for d in devices] == [
        (("nic",), NODE, "dev-a")
    ]
    [plan] = load_state(checkpoint.path).claims["uid-1"].plans
    assert plan.host_ifname == nic.name and plan.pod_ifname == "net1"
    assert plan.addresses == ("198.51.100.7/24",)
    assert plan.host is not None
    assert (plan.host.ifname, plan.host.mtu, plan.host.up) == (nic.name, 1400, True)
    assert load_state(checkpoint.path).claims["uid-1"].pod_uids == ("pod-1",)
    assert await preparer.prepare(REF) == devices  # idempotent


async def test_pool_reserves_and_a_restarted_agent_releases(make_nic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mnprep")
    network = {
        "interfaces": {"names": [nic.name]},
        "ipam": {"type": "pool", "subnet": "10.77.0.0/29"},
    }
    preparer, lookups, reservations, _ = _setup(tmp_path, nic.name, network)
    lookups.claims[("ns", "c1")] = claim_doc(REF, "dev-a")
    await preparer.prepare(REF)
    [(address, holder)] = reservations.held.items()
    assert holder[0] == "uid-1" and ipaddress.ip_address(address) in ipaddress.ip_network(
        "10.77.0.0/29"
    )
    [plan] = Checkpoint.open(tmp_path).state.claims["uid-1"].plans
    assert plan.addresses == (f"{address}/29",) and plan.reserved_addresses == (address,)

    restarted = ClaimPreparer(
        node_name=NODE,
        checkpoint=Checkpoint.open(tmp_path),
        lookups=FakeLookups({}),  # the claim is gone: unprepare must not need it
        devices=FakeDirectory({}),
        reservations=reservations,
        read_host=read_host_state,
    )
    await restarted.unprepare(REF)
    assert reservations.held == {}
    assert load_state(tmp_path / "checkpoint.json").claims == {}
    await restarted.unprepare(REF)  # idempotent


async def test_bad_claim_config_names_claim_request_and_field(make_nic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mnprep")
    network = {
        "interfaces": {"names": [nic.name]},
        "ipam": {"type": "pool", "subnet": "10.77.0.0/29"},
    }
    preparer, lookups, reservations, checkpoint = _setup(tmp_path, nic.name, network)
    config = [
        {
            "source": "FromClaim",
            "requests": ["nic"],
            "opaque": {"driver": "multinet.dev", "parameters": {"mtu": 20}},
        }
    ]
    lookups.claims[("ns", "c1")] = claim_doc(REF, "dev-a", config=config)
    with pytest.raises(ConfigError) as err:
        await preparer.prepare(REF)
    assert str(err.value) == (
        "claim ns/c1 request nic: config[0].mtu: must be between 68 and 65535, got 20"
    )
    assert reservations.held == {}
    assert checkpoint.state.claims == {}


async def test_unallocated_or_recreated_claims_are_refused(make_nic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mnprep")
    preparer, lookups, _, _ = _setup(tmp_path, nic.name, {"interfaces": {"names": [nic.name]}})
    with pytest.raises(ClaimError, match="claim ns/c1: not found"):
        await preparer.prepare(REF)
    doc = claim_doc(REF, "dev-a")
    doc["status"] = {}
    lookups.claims[("ns", "c1")] = doc
    with pytest.raises(ClaimError, match=r"status\.allocation is missing"):
        await preparer.prepare(REF)
    lookups.claims[("ns", "c1")] = claim_doc(ClaimRef(namespace="ns", name="c1", uid="new"), "d")
    with pytest.raises(ClaimError, match=r"metadata\.uid is new"):
        await preparer.prepare(REF)


async def test_unknown_device_is_a_clear_error(make_nic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mnprep")
    preparer, lookups, _, _ = _setup(tmp_path, nic.name, {"interfaces": {"names": [nic.name]}})
    lookups.claims[("ns", "c1")] = claim_doc(REF, "dev-zz")
    with pytest.raises(ClaimError, match="claim ns/c1 request nic: device dev-zz is not in node"):
        await preparer.prepare(REF)


async def test_unprepare_waits_while_the_interface_is_in_a_pod(make_nic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mnprep", addresses=("198.51.100.8/24",))
    preparer, lookups, _, checkpoint = _setup(
        tmp_path, nic.name, {"interfaces": {"names": [nic.name]}}
    )
    lookups.claims[("ns", "c1")] = claim_doc(REF, "dev-a")
    await preparer.prepare(REF)
    [plan] = checkpoint.state.claims["uid-1"].plans
    att = Attachment(plan_key=plan.key, pod_uid="pod-1", pod="ns/p1", netns="/x", phase="attached")
    await checkpoint.record([att])
    with pytest.raises(ClaimError, match="still attached in pod ns/p1"):
        await preparer.unprepare(REF)
    assert "uid-1" in checkpoint.state.claims
    await checkpoint.forget([plan.key])
    await preparer.unprepare(REF)
    assert checkpoint.state.claims == {}
