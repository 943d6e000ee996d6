"""The inventory against the real kernel in the shared root netns, veth pairs as "NICs".

Only interfaces this test made (unique random names) are asserted on: other test runs create
and delete veths concurrently.

Cases:
- a NIC shows up as a device named after it with the attributes `ip` reports (MAC, MTU, kind,
  state, first IPv4/IPv6)
- loopback and the default-route interface are not devices; a bridge with a pod veth (peer in
  another netns) and that veth are excluded, unless a network names them exactly
- hotplug and removal reach the inventory's snapshot stream well within 1 s (latency measured)
- a NIC moved into another netns stays a device while the agent says it is away (pool must not
  flap) and is dropped when it is not
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from multinet import slices
from multinet.agent.publish import PublishLoop
from multinet.devices.binding import DeviceConflict, NetworkSelector
from multinet.devices.model import Device, HostSnapshot
from multinet.devices.resolve import resolve
from multinet.netlink.inventory import Inventory

pytestmark = pytest.mark.root

D = "multinet.dev/"


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def quietly(*commands: list[str]) -> None:
    """Teardown: run each `ip` command, ignoring failures (the object may be gone already)."""
    for args in commands:
        subprocess.run(["ip", *args], capture_output=True)


def link_json(name: str) -> dict[str, object]:
    doc: list[dict[str, object]] = json.loads(ip("-j", "link", "show", "dev", name))
    return doc[0]


async def next_matching(
    stream: AsyncIterator[HostSnapshot], pred: Callable[[HostSnapshot], bool], within: float
) -> HostSnapshot:
    async def scan() -> HostSnapshot:
        async for snap in stream:
            if pred(snap):
                return snap
        raise AssertionError("snapshot stream ended")

    return await asyncio.wait_for(scan(), within)


def names_in(snap: HostSnapshot) -> set[str]:
    return {link.ifname for link in snap.links}


async def test_a_veth_nic_becomes_a_device_with_the_attributes_ip_reports(make_nic) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mninv", addresses=("198.51.100.7/24",), mtu=1400)
    ip("addr", "add", "2001:db8:77::7/64", "dev", nic.name, "nodad")
    async with Inventory() as inv:
        res = resolve(inv.current)
    device = next(d for d in res.devices if d.ifname == nic.name)
    shown = link_json(nic.name)
    assert device.name == nic.name
    assert device.attributes == {
        D + "ifName": nic.name,
        D + "mac": shown["address"],
        D + "mtu": 1400,
        D + "kind": "veth",
        D + "virtual": True,
        D + "state": str(shown["operstate"]).lower(),
        D + "ipv4": "198.51.100.7/24",
        D + "ipv6": "2001:db8:77::7/64",
    }
    ifnames = {d.ifname for d in res.devices}
    assert "lo" not in ifnames
    default_dev = json.loads(ip("-j", "route", "show", "default"))[0]["dev"]
    assert default_dev not in ifnames and res.excluded[default_dev] == "default route"


async def test_pod_veth_and_its_cni_bridge_are_excluded_unless_named_exactly() -> None:
    tag = secrets.token_hex(3)
    br, host_end, pod_end, ns = f"mnbr{tag}", f"mnvh{tag}", f"mnvp{tag}", f"mnns{tag}"
    ip("netns", "add", ns)
    try:
        ip("link", "add", br, "type", "bridge")
        ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
        ip("link", "set", host_end, "master", br)
        ip("link", "set", pod_end, "netns", ns)
        async with Inventory() as inv:
            snap = inv.current
        res = resolve(snap)
        assert res.excluded[br] == "CNI bridge" and res.excluded[host_end] == "pod veth"
        assert not {br, host_end} & {d.ifname for d in res.devices}
        exact = NetworkSelector(name="explicit", interfaces=(host_end,))
        bound = resolve(snap, [exact])
        assert [d.network for d in bound.devices if d.ifname == host_end] == ["explicit"]
    finally:
        quietly(["link", "del", host_end], ["link", "del", br], ["netns", "del", ns])


async def test_hotplug_and_removal_reach_the_snapshot_stream_within_a_second(make_nic) -> None:  # type: ignore[no-untyped-def]
    async with Inventory(debounce_seconds=0.1) as inv:
        stream = inv.changes()
        started = time.monotonic()
        nic = make_nic(prefix="mnhot", addresses=("198.51.100.9/24",))
        snap = await next_matching(
            stream,
            lambda s: any(lk.ifname == nic.name and lk.ipv4 for lk in s.links),
            within=1.0,
        )
        added = time.monotonic() - started
        assert nic.name in {d.ifname for d in resolve(snap).devices}
        started = time.monotonic()
        ip("link", "del", nic.name)
        await next_matching(stream, lambda s: nic.name not in names_in(s), within=1.0)
        removed = time.monotonic() - started
    print(f"inventory latency: hotplug {added * 1000:.0f} ms, removal {removed * 1000:.0f} ms")


@dataclass
class StaticNetworks:
    """Networks given as data (the PodNetwork watcher's place in the loop)."""

    selectors: tuple[NetworkSelector, ...] = ()
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reported: list[DeviceConflict] = field(default_factory=list)

    async def report_conflicts(self, conflicts: Sequence[DeviceConflict]) -> int:
        self.reported = list(conflicts)
        return len(conflicts)


class NoApiserver:
    """The publish step without an apiserver: returns the plan against an empty pool."""

    async def publish(self, devices: Sequence[Device]) -> slices.SlicePlan:
        return slices.plan(slices.NodeRef("node", "uid"), devices, [])


async def test_a_nic_inside_a_pod_stays_advertised_while_away(make_nic) -> None:  # type: ignore[no-untyped-def]
    nic = make_nic(prefix="mnaway", mtu=1450)
    ns = f"mnns{secrets.token_hex(3)}"
    away: set[str] = set()
    nets = StaticNetworks(selectors=(NetworkSelector(name="blue", interfaces=("mnaway*",)),))
    async with Inventory(debounce_seconds=0.05) as inv:
        loop = PublishLoop(inventory=inv, networks=nets, publisher=NoApiserver(), away=lambda: away)
        before = next(d for d in loop.devices(inv.current).devices if d.ifname == nic.name)
        ip("netns", "add", ns)
        try:
            away.add(before.name)
            ip("link", "set", nic.name, "netns", ns)
            stream = inv.changes()
            await next_matching(stream, lambda s: nic.name not in names_in(s), within=2.0)
            during = [d for d in loop.devices(inv.current).devices if d.name == before.name]
            assert during == [before]  # same facts, still bound to blue
            away.clear()
            assert before.name not in {d.name for d in loop.devices(inv.current).devices}
        finally:
            quietly(["netns", "del", ns])
