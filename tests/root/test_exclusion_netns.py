"""The node's own plumbing is not advertised under a glob: real kernel, private network namespaces.

Every case builds its topology inside a fresh netns (``ex<6 hex>``, deleted at the end with
everything in it) and reads it with ``Inventory(netns=...)``: the host's links, routes and
sysctls are never touched, so the fixed link names inside cannot clash with concurrent runs.
Addresses come from the documentation ranges 198.51.100.0/24 and 2001:db8::/32.

Cases (a network selecting ``*``):
- a bridge carrying the default route (IPv4 and IPv6): its veth port is excluded, the port's
  peer is not (a peer is no lower device)
- a macvlan over a veth carrying the default route: the veth is excluded; a macvlan over a
  bridge over a veth: the bridge and, recursively, its port
- a default route through a nexthop object with ``net.ipv4.nexthop_compat_mode=0`` (per netns:
  set inside the test netns only), a single nexthop and a group; replacing the object moves the
  exclusion through the live notification stream
- a vxlan named ``flannel.1`` and a bridge named ``cni0`` are excluded, and advertised when a
  network names them exactly
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from multinet.devices.binding import NetworkSelector
from multinet.devices.model import HostSnapshot
from multinet.devices.resolve import Resolution, resolve
from multinet.netlink.inventory import Inventory

pytestmark = pytest.mark.root

EVERYTHING = NetworkSelector(name="all", interfaces=("*",))


def sh(ns: str, *commands: str) -> None:
    """Run each `ip ...`/`sysctl ...` command inside netns ``ns``."""
    for command in commands:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *command.split()], capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"{command} (in {ns}): {done.stderr.strip()}")


def host_sysctl(name: str) -> str:
    return subprocess.run(
        ["sysctl", "-n", name], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"ex{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def snapshot_of(ns: str) -> HostSnapshot:
    async with Inventory(netns=ns) as inv:
        return inv.current


def advertised(res: Resolution) -> dict[str, str | None]:
    return {d.ifname: d.network for d in res.devices}


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
async def test_the_veth_port_of_a_default_route_bridge_is_excluded(ns: str, family: str) -> None:
    sh(
        ns,
        "ip link add exbr type bridge",
        "ip link add export type veth peer name expeer",
        "ip link set export master exbr",
        "ip link set exbr up",
        "ip link set export up",
        "ip link set expeer up",
    )
    if family == "IPv4":
        sh(ns, "ip addr add 198.51.100.1/24 dev exbr", "ip route add default via 198.51.100.254")
    else:
        sh(
            ns,
            "ip addr add 2001:db8:e1::1/64 dev exbr nodad",
            "ip -6 route add default via 2001:db8:e1::fe dev exbr",
        )
    res = resolve(await snapshot_of(ns), [EVERYTHING])
    assert res.excluded["exbr"] == "default route"
    assert res.excluded["export"] == "port of default-route interface exbr"
    assert advertised(res) == {"expeer": "all"}


async def test_the_lower_veth_of_a_default_route_macvlan_is_excluded(ns: str) -> None:
    sh(
        ns,
        "ip link add exlow type veth peer name expeer",
        "ip link add exmv link exlow type macvlan mode bridge",
        "ip link set exlow up",
        "ip link set expeer up",
        "ip link set exmv up",
        "ip addr add 198.51.100.2/24 dev exmv",
        "ip route add default via 198.51.100.254 dev exmv",
    )
    res = resolve(await snapshot_of(ns), [EVERYTHING])
    assert res.excluded["exmv"] == "default route"
    assert res.excluded["exlow"] == "parent of default-route interface exmv"
    assert advertised(res) == {"expeer": "all"}


async def test_the_whole_tree_under_a_default_route_macvlan_over_a_bridge_is_excluded(
    ns: str,
) -> None:
    sh(
        ns,
        "ip link add exbr type bridge",
        "ip link add export type veth peer name expeer",
        "ip link set export master exbr",
        "ip link add exmv link exbr type macvlan mode bridge",
        "ip link set exbr up",
        "ip link set export up",
        "ip link set expeer up",
        "ip link set exmv up",
        "ip addr add 198.51.100.3/24 dev exmv",
        "ip route add default via 198.51.100.254 dev exmv",
    )
    res = resolve(await snapshot_of(ns), [EVERYTHING])
    assert advertised(res) == {"expeer": "all"}
    assert res.excluded["exbr"] == "parent of default-route interface exmv"
    assert res.excluded["export"] == "port of exbr, below default-route interface exmv"


async def test_a_default_route_through_a_nexthop_object_without_compat_mode(ns: str) -> None:
    before = host_sysctl("net.ipv4.nexthop_compat_mode")
    sh(
        ns,
        # Per netns (net->ipv4.sysctl_nexthop_compat_mode): this changes nothing on the host.
        "sysctl -qw net.ipv4.nexthop_compat_mode=0",
        "ip link add exa type veth peer name exap",
        "ip link add exb type veth peer name exbp",
        "ip link add exc type veth peer name excp",
        *(f"ip link set {n} up" for n in ("exa", "exap", "exb", "exbp", "exc", "excp")),
        "ip nexthop add id 7 dev exa",
        "ip route add default nhid 7",
    )
    assert host_sysctl("net.ipv4.nexthop_compat_mode") == before
    async with Inventory(netns=ns, debounce_seconds=0.05) as inv:
        res = resolve(inv.current, [EVERYTHING])
        assert res.excluded["exa"] == "default route"
        assert set(advertised(res)) == {"exap", "exb", "exbp", "exc", "excp"}

        # Replacing the object sends no route notification in this mode: the inventory must
        # follow the nexthop object itself.
        stream = inv.changes()
        sh(ns, "ip nexthop replace id 7 dev exc")
        snap = await asyncio.wait_for(
            _first(stream, lambda s: _route_names(s) == {"exc"}), timeout=2.0
        )
        res = resolve(snap, [EVERYTHING])
        assert res.excluded["exc"] == "default route" and "exa" in advertised(res)


async def test_a_default_route_through_a_nexthop_group(ns: str) -> None:
    sh(
        ns,
        "sysctl -qw net.ipv4.nexthop_compat_mode=0",
        "ip link add exa type veth peer name exap",
        "ip link add exbr type bridge",
        "ip link add export type veth peer name expeer",
        "ip link set export master exbr",
        *(f"ip link set {n} up" for n in ("exa", "exap", "exbr", "export", "expeer")),
        "ip addr add 198.51.100.4/24 dev exa",
        "ip nexthop add id 7 via 198.51.100.254 dev exa",
        "ip nexthop add id 8 dev exbr",
        "ip nexthop add id 9 group 7/8",
        "ip route add default nhid 9",
    )
    res = resolve(await snapshot_of(ns), [EVERYTHING])
    assert res.excluded["exa"] == res.excluded["exbr"] == "default route"
    assert res.excluded["export"] == "port of default-route interface exbr"
    assert advertised(res) == {"exap": "all", "expeer": "all"}


async def test_overlay_and_cni_devices_are_excluded_unless_named_exactly(ns: str) -> None:
    sh(
        ns,
        "ip link add flannel.1 type vxlan id 42 dstport 8472 nolearning",
        "ip link add cni0 type bridge",
        "ip link add exnic type veth peer name expeer",
    )
    snap = await snapshot_of(ns)
    res = resolve(snap, [EVERYTHING])
    assert res.excluded["flannel.1"] == "known overlay/CNI device (flannel)"
    assert res.excluded["cni0"] == "known overlay/CNI device (CNI bridge plugin)"
    assert advertised(res) == {"exnic": "all", "expeer": "all"}

    named = NetworkSelector(name="chosen", interfaces=("flannel.1", "cni0"))
    res = resolve(snap, [EVERYTHING, named])
    assert "flannel.1" not in res.excluded and "cni0" not in res.excluded
    # "*" selects them too: two networks want them, so they are reported as a conflict...
    assert {c.ifname for c in res.conflicts} == {"flannel.1", "cni0"}
    # ...and with the exact names alone they are advertised, bound to that network.
    res = resolve(snap, [NetworkSelector(name="all", interfaces=("ex*",)), named])
    assert advertised(res) == {
        "exnic": "all",
        "expeer": "all",
        "flannel.1": "chosen",
        "cni0": "chosen",
    }


def _route_names(snap: HostSnapshot) -> set[str]:
    by_index = snap.by_index()
    return {by_index[i].ifname for i in snap.default_route_ifindexes if i in by_index}


async def _first(
    stream: AsyncIterator[HostSnapshot], pred: Callable[[HostSnapshot], bool]
) -> HostSnapshot:
    async for snap in stream:
        if pred(snap):
            return snap
    raise AssertionError("snapshot stream ended")
