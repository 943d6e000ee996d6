"""Shared macvlan NICs as slot devices, for clusters without consumable capacity.

Cases:
- names: ``<parent>-s<index>``, DNS labels of at most 63 characters, the same on every resolve;
  a parent too long for the suffix, and a slot name another device already has, get the salted
  form and stay unique
- devices: N = the network's per-parent maximum (the capacity the shared form carries), each
  slot plain (allocatable once, no capacity), with every attribute of the parent (the
  DeviceClass selector's podNetwork included) plus parentDevice and slot, the parent's ifname;
  the parent itself is not published; host-device devices are untouched; consumable capacity
  keeps one shared device
- slices: 64 slots x 3 NICs and other devices split at 128 (plain devices), every device once;
  a slot of a full PCI NIC stays within the API's 32 attributes and capacities per device
- the publish loop publishes the form it was told, and republishes on a change
- preparing: a slot resolves to its parent NIC and gets a macvlan child of it; a device name
  this node does not publish (the shared form's, after a switch to slots) is a clear ClaimError
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from publishdoubles import EmptyPool, Snapshots, StaticNetworks

from multinet import slices
from multinet.agent.main import PublishedDevices
from multinet.agent.prepare import ClaimPreparer, DirectoryEntry
from multinet.agent.publish import PublishLoop
from multinet.api import names, parameters
from multinet.api.parameters import NetworkParameters
from multinet.checkpoint import Checkpoint
from multinet.controller import decisions
from multinet.devices import binding, naming
from multinet.devices.model import Hardware, HostSnapshot, Link
from multinet.devices.resolve import resolve
from multinet.devices.slots import PARENT_ATTRIBUTE, SLOT_ATTRIBUTE, Sharing
from multinet.errors import ClaimError
from multinet.plans import ClaimRef, HostState

NODE = "node-a"
SLOTS = Sharing.SLOT_DEVICES
ETH0 = Link(index=2, ifname="eth0", mac="02:00:00:00:00:02", up=True, oper_state="up")


def pci_nic(index: int, function: int) -> Link:
    return Link(
        index=index,
        ifname=f"ens5f{function}",
        mac=f"0c:42:a1:00:00:0{function}",
        perm_mac=f"0c:42:a1:00:00:0{function}",
        mtu=9000,
        up=True,
        oper_state="up",
        ipv4=("192.0.2.7/24",),
        ipv6=("2001:db8::7/64",),
        hw=Hardware(
            pci_address=f"0000:3b:00.{function}",
            pcie_root="pci0000:3a",
            vendor="15b3",
            device="1017",
            driver="mlx5_core",
            numa_node=0,
            speed=25000,
            sriov_total_vfs=8,
            sriov_num_vfs=2,
        ),
    )


def veth(index: int, ifname: str) -> Link:
    return Link(index=index, ifname=ifname, kind="veth", mac="9e:00:00:00:00:01")


def host(*links: Link) -> HostSnapshot:
    return HostSnapshot(links=(ETH0, *links), default_route_ifindexes=frozenset({2}))


MACVLAN = binding.NetworkSelector(name="mv", interfaces=("ens5f*",), mode="macvlan")
HOST_DEVICE = binding.NetworkSelector(name="hd", interfaces=("hd*",))


# --- names ------------------------------------------------------------------------------------


def test_slot_names_are_the_parent_name_and_index_and_dns_labels() -> None:
    assert naming.slot_name("pci-0000-3b-00-1", 0) == "pci-0000-3b-00-1-s0"
    assert naming.slot_name("pci-0000-3b-00-1", 63) == "pci-0000-3b-00-1-s63"
    assert all(naming.is_dns_label(naming.slot_name("eth1", i)) for i in range(64))


def test_a_parent_too_long_for_the_suffix_keeps_a_hash_of_its_whole_name() -> None:
    long_a, long_b = "a" * 60 + "-x1", "a" * 60 + "-x2"
    slot_a, slot_b = naming.slot_name(long_a, 63), naming.slot_name(long_b, 63)
    assert len(slot_a) <= 63 and naming.is_dns_label(slot_a) and slot_a.endswith("-s63")
    assert slot_a != slot_b
    assert naming.slot_name(long_a, 63) == slot_a  # stable


def test_slot_names_are_the_same_on_every_resolve_and_after_a_restart() -> None:
    snapshot = host(pci_nic(5, 0), pci_nic(6, 1))
    first = [d.name for d in resolve(snapshot, [MACVLAN], sharing=SLOTS).devices]
    # the kernel lists links in another order, with other indexes, after a reboot
    again = host(replace(pci_nic(6, 1), index=41), replace(pci_nic(5, 0), index=40))
    assert [d.name for d in resolve(again, [MACVLAN], sharing=SLOTS).devices] == first


def test_a_slot_name_another_device_has_takes_the_salted_form() -> None:
    parent, impostor = veth(30, "hd1"), veth(31, "hd1-s0")
    net = binding.NetworkSelector(name="mv", interfaces=("hd1",), mode="macvlan", max_interfaces=2)
    found = resolve(host(parent, impostor), [net], sharing=SLOTS).devices
    by_name = {d.name: d for d in found}
    assert len(by_name) == len(found)
    assert by_name["hd1-s0"].parent is None  # the interface keeps its own name
    salted = naming.slot_name("hd1", 0, salted=True)
    assert by_name[salted].parent == "hd1" and by_name[salted].attributes[SLOT_ATTRIBUTE] == 0
    assert by_name["hd1-s1"].parent == "hd1"


# --- devices ----------------------------------------------------------------------------------


def test_each_shared_parent_becomes_its_capacity_in_plain_slots_with_its_attributes() -> None:
    snapshot = host(pci_nic(5, 0), veth(30, "hd0"))
    shared = {d.name: d for d in resolve(snapshot, [MACVLAN, HOST_DEVICE]).devices}
    parent = shared["pci-0000-3b-00-0"]
    assert parent.shareable
    found = resolve(snapshot, [MACVLAN, HOST_DEVICE], sharing=SLOTS).devices
    slots = [d for d in found if d.parent == parent.name]

    assert len(slots) == binding.DEFAULT_MAX_INTERFACES == 64
    assert parent.name not in {d.name for d in found}
    assert {d.name for d in slots} == {f"pci-0000-3b-00-0-s{i}" for i in range(64)}
    for slot in slots:
        index = slot.attributes[SLOT_ATTRIBUTE]
        assert slot.name == f"pci-0000-3b-00-0-s{index}"
        assert not slot.shareable and slot.capacity == {}
        assert (slot.ifname, slot.network) == ("ens5f0", "mv")
        assert slot.attributes == {
            **parent.attributes,
            PARENT_ATTRIBUTE: parent.name,
            SLOT_ATTRIBUTE: index,
        }
        assert slot.attributes[names.ATTRIBUTE] == "mv"  # the DeviceClass selector matches
    assert shared["hd0"] in found  # a host-device NIC is published as before


def test_the_slot_count_is_the_networks_per_parent_maximum() -> None:
    net = binding.NetworkSelector(
        name="mv", interfaces=("ens5f0",), mode="macvlan", max_interfaces=5
    )
    found = resolve(host(pci_nic(5, 0)), [net], sharing=SLOTS).devices
    assert {d.attributes[SLOT_ATTRIBUTE] for d in found if d.parent} == {0, 1, 2, 3, 4}


def test_with_consumable_capacity_a_parent_stays_one_shared_device() -> None:
    found = resolve(host(pci_nic(5, 0)), [MACVLAN], sharing=Sharing.CONSUMABLE_CAPACITY).devices
    (parent,) = (d for d in found if d.network == "mv")
    assert parent.shareable and parent.parent is None and parent.name == "pci-0000-3b-00-0"


def test_the_device_class_selector_names_the_attribute_slots_carry() -> None:
    assert f'"{names.ATTRIBUTE_DOMAIN}"' in decisions.selector_expression("mv")
    assert f".{names.ATTRIBUTE_NAME} ==" in decisions.selector_expression("mv")


# --- slices -----------------------------------------------------------------------------------


def test_many_slots_split_across_slices_of_128_with_every_device_once() -> None:
    nics = [pci_nic(5 + f, f) for f in range(3)]
    spares = [veth(40 + i, f"hd{i}") for i in range(10)]
    found = resolve(host(*nics, *spares), [MACVLAN, HOST_DEVICE], sharing=SLOTS).devices
    assert len(found) == 3 * 64 + 10

    plan = slices.plan(slices.NodeRef(NODE, "uid"), found, [])

    sizes = [len(b["spec"]["devices"]) for b in plan.to_create]
    assert sizes == [128, 74]
    published = [d for b in plan.to_create for d in b["spec"]["devices"]]
    assert sorted(d["name"] for d in published) == sorted(d.name for d in found)
    assert all(naming.is_dns_label(d["name"]) for d in published)
    assert not any("allowMultipleAllocations" in d or "capacity" in d for d in published)
    assert {b["spec"]["pool"]["resourceSliceCount"] for b in plan.to_create} == {2}
    # the API allows 32 attributes and capacities per device
    assert max(len(d.get("attributes", {})) + len(d.get("capacity", {})) for d in published) <= 32


# --- the publish loop -------------------------------------------------------------------------


async def test_the_loop_publishes_the_form_it_is_told_and_republishes_on_a_change() -> None:
    loop = PublishLoop(
        inventory=Snapshots(host(pci_nic(5, 0))),
        networks=StaticNetworks(selectors=(MACVLAN,)),
        publisher=EmptyPool(),
    )
    assert loop.sharing is SLOTS  # until told otherwise, the form that works everywhere
    plan = await loop.publish_once()
    assert plan.device_count == 64  # eth0 carries the default route: never published
    loop.use_sharing(Sharing.CONSUMABLE_CAPACITY)
    plan = await loop.publish_once()
    assert plan.device_count == 1


# --- preparing a slot -------------------------------------------------------------------------


class FakeApiReads:
    """The claim and PodNetwork reads of prepare, as data: a unit test has no apiserver."""

    def __init__(self, claim: dict[str, Any]) -> None:
        self.claim = claim

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.claim

    async def get_network_parameters(self, network: str) -> NetworkParameters:
        return parameters.parse({"interfaces": {"names": ["ens5f*"]}, "mode": "macvlan"})


class NoReservations:
    """IPAM none: prepare reserves nothing; any call is a test failure."""

    async def reserve_from_pool(self, *args: object) -> Any:
        raise AssertionError("no pool in this network")

    async def reserve_static(self, *args: object) -> None:
        raise AssertionError("no pool in this network")

    async def release(self, *args: object) -> None:
        raise AssertionError("nothing was reserved")


async def _never_read_host(ifname: str) -> HostState:
    raise AssertionError("a macvlan parent's host state is not read")


def _claim(ref: ClaimRef, device: str) -> dict[str, Any]:
    result = {"request": "nic", "driver": names.DRIVER, "pool": NODE, "device": device}
    return {
        "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
        "status": {
            "allocation": {"devices": {"results": [result], "config": []}},
            "reservedFor": [{"resource": "pods", "name": "p1", "uid": "pod-1"}],
        },
    }


async def _slot_publishing_agent() -> PublishLoop:
    loop = PublishLoop(
        inventory=Snapshots(host(pci_nic(5, 0))),
        networks=StaticNetworks(selectors=(MACVLAN,)),
        publisher=EmptyPool(),
        sharing=SLOTS,
    )
    await loop.publish_once()
    return loop


async def test_a_slot_device_is_prepared_as_a_macvlan_child_of_its_parent_nic(
    tmp_path: Path,
) -> None:
    loop = await _slot_publishing_agent()
    directory = PublishedDevices(loop)
    assert directory.lookup("pci-0000-3b-00-0-s7") == DirectoryEntry(ifname="ens5f0", network="mv")
    ref = ClaimRef(namespace="ns", name="c1", uid="uid-1")
    preparer = ClaimPreparer(
        node_name=NODE,
        checkpoint=Checkpoint.open(tmp_path),
        lookups=FakeApiReads(_claim(ref, "pci-0000-3b-00-0-s7")),
        devices=directory,
        reservations=NoReservations(),
        read_host=_never_read_host,
    )

    (prepared,) = await preparer.prepare(ref)

    assert (prepared.pool_name, prepared.device_name) == (NODE, "pci-0000-3b-00-0-s7")
    (plan,) = Checkpoint.open(tmp_path).state.claims["uid-1"].plans
    assert (plan.mode, plan.host_ifname, plan.device) == ("macvlan", "ens5f0", prepared.device_name)


async def test_a_device_this_node_does_not_publish_is_a_clear_prepare_error(
    tmp_path: Path,
) -> None:
    loop = await _slot_publishing_agent()
    ref = ClaimRef(namespace="ns", name="c1", uid="uid-1")
    preparer = ClaimPreparer(
        node_name=NODE,
        checkpoint=Checkpoint.open(tmp_path),
        # allocated while the NIC was published as one shared device
        lookups=FakeApiReads(_claim(ref, "pci-0000-3b-00-0")),
        devices=PublishedDevices(loop),
        reservations=NoReservations(),
        read_host=_never_read_host,
    )
    with pytest.raises(ClaimError, match=r"device pci-0000-3b-00-0 is not in node node-a"):
        await preparer.prepare(ref)
    assert Checkpoint.open(tmp_path).state.claims == {}
