"""Attach plans executed with real netlink in real network namespaces, veth pairs as "NICs".

Cases:
- host-device attach: rename, MTU, MAC, two addresses and a route show up inside the pod exactly;
  the NIC keeps its index in the pod, or gets another when the pod has a link with it
- detach gives the host back name, MTU, MAC, addresses (order, broadcast), routes, state: 50 cycles
- macvlan: two children of one parent in two pods, distinct addresses, they reach each other;
  detach deletes them and the parent is untouched
- failures we can really cause (unreachable gateway, duplicate address, name taken in the pod,
  MTU above the parent's, missing netns) raise AttachError naming claim and device, leave no trace
- detach is idempotent; a dead namespace with a veth is reported as gone; a physical NIC that fell
  back to the host (fake, see the helper) is found and restored
- 10 attaches in parallel through the async mover all succeed, and detach restores all of them
- a NIC with everything the README promises (manual link-local, labelled and flagged addresses,
  scope link, table 100 onlink, multipath and route-metric routes, IPv6 multipath and preference,
  bridge master, addrgenmode) comes back exact; so does its multipath partner
- a stranger that took the NIC's name on the host (detach), or its name and index (failed attach),
  while the NIC was in the pod is left untouched and the error names the device
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import time
from dataclasses import dataclass

import pytest
from netfixtures import (
    Lab,
    fake_netns_death_physical,
    has_link,
    host_subnet,
    ip_json,
    lab,
    link_view,
    sh,
    uid,
)

from multinet.errors import AttachError, RestoreError
from multinet.netlink import attach as attaching
from multinet.netlink import executor, hoststate, netns, restore
from multinet.netlink.attach import attach
from multinet.netlink.rtnl import RtnlError
from multinet.plans import Attachment, AttachPlan, ClaimRef, HostState, Route

pytestmark = pytest.mark.root


def plan_for(
    nic: str,
    *,
    mode: str = "host-device",
    pod_ifname: str = "net1",
    addresses: tuple[str, ...] = ("10.77.0.2/24", "10.77.0.3/24"),
    routes: tuple[Route, ...] = (Route(destination="10.78.0.0/16", gateway="10.77.0.1"),),
    mtu: int | None = 1400,
    mac: str | None = "02:aa:bb:cc:dd:01",
    host: HostState | None = None,
) -> AttachPlan:
    return AttachPlan(
        claim=ClaimRef(namespace="team-a", name=f"claim-{nic}", uid=f"uid-{nic}"),
        request="nic",
        pool="node-1",
        device=f"dev-{nic}",
        network="fast",
        mode=mode,
        host_ifname=nic,
        pod_ifname=pod_ifname,
        addresses=addresses,
        mtu=mtu,
        mac=mac,
        routes=routes,
        host=host,
    )


def host_state(nic: str) -> HostState:
    rt, _ = netns.host()
    link = rt.get_link(name=nic)
    assert link is not None
    return hoststate.read_link(rt, link)


@pytest.fixture
def net() -> Lab:  # type: ignore[misc]
    with lab() as it:
        yield it


def a_nic(net: Lab) -> str:
    """A NIC with two addresses (primary, secondary) and two routes, one with a metric."""
    net24, dst24 = host_subnet()
    return net.new_nic(
        addresses=(f"{net24}.10/24", f"{net24}.11/24"),
        routes=(f"{dst24}.0/25 via {net24}.1", f"{dst24}.128/25 via {net24}.1 metric 50"),
    )


def test_host_device_attach_configures_the_interface_inside_the_pod(net: Lab) -> None:
    nic = a_nic(net)
    ns = net.new_netns()
    result = attach(plan_for(nic, host=host_state(nic)), net.netns_path(ns))

    inside = link_view("net1", ns)
    assert inside["mtu"] == 1400
    assert inside["mac"] == "02:aa:bb:cc:dd:01"
    assert inside["up"]
    assert inside["addresses"] == [
        ("10.77.0.2", 24, None, False, None, (), "global"),
        ("10.77.0.3", 24, None, True, None, (), "global"),
    ]
    # proto boot: `ip` omits it
    assert [r[:4] for r in inside["routes"]] == [("10.78.0.0/16", "10.77.0.1", None, None)]
    assert not has_link(nic)
    assert (result.ifname, result.mac, result.addresses) == (
        "net1",
        "02:aa:bb:cc:dd:01",
        ("10.77.0.2/24", "10.77.0.3/24"),
    )
    assert result.host is not None and result.host.ifname == nic


@pytest.mark.parametrize("taken", [False, True], ids=["index free in the pod", "index taken"])
def test_the_nic_keeps_its_index_in_the_pod_unless_the_pod_has_it(net: Lab, taken: bool) -> None:
    nic = a_nic(net)
    before = link_view(nic)
    ns = net.new_netns()
    state = host_state(nic)
    if taken:  # the pod has a link with the NIC's index: the move gives the NIC another
        sh(f"ip -n {ns} link add mnx{uid()} index {state.ifindex} type veth peer name mny{uid()}")
    result = attach(plan_for(nic, host=state), net.netns_path(ns))

    (inside,) = ip_json("link show dev net1", ns)
    assert result.ifindex == inside["ifindex"]
    assert (inside["ifindex"] == state.ifindex) is not taken
    view = link_view("net1", ns)  # configured through that index
    assert [a[0] for a in view["addresses"]] == ["10.77.0.2", "10.77.0.3"]
    assert [r[:2] for r in view["routes"]] == [("10.78.0.0/16", "10.77.0.1")]
    restore.detach(plan_for(nic), net.netns_path(ns), host=result.host)
    assert link_view(nic) == before


def test_detach_restores_the_host_exactly_50_times(net: Lab) -> None:
    nic = a_nic(net)
    ns = net.new_netns()
    before = link_view(nic)
    plan = plan_for(nic, host=host_state(nic))
    for cycle in range(50):
        result = attach(plan, net.netns_path(ns))
        assert link_view("net1", ns)["mac"] == "02:aa:bb:cc:dd:01"
        restore.detach(plan, net.netns_path(ns), host=result.host)
        assert link_view(nic) == before, f"cycle {cycle}"
        assert not has_link("net1", ns)


def test_detach_restores_a_down_interface_as_down(net: Lab) -> None:
    nic = net.new_nic(addresses=(f"{host_subnet()[0]}.20/24",))
    sh(f"ip link set {nic} down")
    ns = net.new_netns()
    before = link_view(nic)
    plan = plan_for(nic, host=host_state(nic))
    result = attach(plan, net.netns_path(ns))
    assert link_view("net1", ns)["up"]
    restore.detach(plan, net.netns_path(ns), host=result.host)
    assert link_view(nic) == before
    assert not before["up"]


def test_detach_is_idempotent(net: Lab) -> None:
    nic = a_nic(net)
    ns = net.new_netns()
    before = link_view(nic)
    plan = plan_for(nic, host=host_state(nic))
    result = attach(plan, net.netns_path(ns))
    restore.detach(plan, net.netns_path(ns), host=result.host)
    restore.detach(plan, net.netns_path(ns), host=result.host)
    assert link_view(nic) == before


def test_detach_when_already_home_repairs_the_state(net: Lab) -> None:
    """An agent that died half-way through a restore finds the NIC home but bare."""
    nic = a_nic(net)
    ns = net.new_netns()
    before = link_view(nic)
    plan = plan_for(nic, host=host_state(nic))
    result = attach(plan, net.netns_path(ns))
    sh(f"ip -n {ns} link set dev net1 netns {os.getpid()}")
    sh(f"ip link set dev net1 name {nic}")
    restore.detach(plan, net.netns_path(ns), host=result.host)
    assert link_view(nic) == before


def test_macvlan_children_in_two_pods(net: Lab) -> None:
    parent = net.new_nic()
    parent_before = link_view(parent)
    ns1, ns2 = net.new_netns(), net.new_netns()
    p1 = plan_for(parent, mode="macvlan", addresses=("10.80.0.11/24",), routes=(), mac=None)
    p2 = plan_for(
        parent, mode="macvlan", addresses=("10.80.0.12/24",), routes=(), mac="02:aa:bb:cc:dd:02"
    )
    r1 = attach(p1, net.netns_path(ns1))
    r2 = attach(p2, net.netns_path(ns2))

    v1, v2 = link_view("net1", ns1), link_view("net1", ns2)
    assert [a[:4] for a in v1["addresses"]] == [("10.80.0.11", 24, None, False)]
    assert [a[:4] for a in v2["addresses"]] == [("10.80.0.12", 24, None, False)]
    assert v2["mac"] == "02:aa:bb:cc:dd:02" == r2.mac
    assert v1["mac"] == r1.mac != r2.mac
    assert v1["mtu"] == 1400
    sh(f"ip netns exec {ns1} busybox ping -c 1 -W 2 10.80.0.12")
    assert link_view(parent) == parent_before

    restore.detach(p1, net.netns_path(ns1))
    restore.detach(p2, net.netns_path(ns2))
    restore.detach(p2, net.netns_path(ns2))  # idempotent
    assert not has_link("net1", ns1) and not has_link("net1", ns2)
    assert link_view(parent) == parent_before


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("unreachable gateway", "add route 10.78.0.0/16 via 10.99.0.1"),
        ("duplicate address", "add address 10.77.0.2/24"),
        ("name taken in the pod", "move"),
    ],
)
def test_failed_host_device_attach_leaves_the_nic_on_the_host(
    net: Lab, case: str, cause: str
) -> None:
    nic = a_nic(net)
    ns = net.new_netns()
    before = link_view(nic)
    plan = plan_for(nic, host=host_state(nic))
    if case == "unreachable gateway":
        plan = plan.model_copy(
            update={"routes": (Route(destination="10.78.0.0/16", gateway="10.99.0.1"),)}
        )
    elif case == "duplicate address":
        plan = plan.model_copy(update={"addresses": ("10.77.0.2/24", "10.77.0.2/24")})
    else:
        sh(f"ip -n {ns} link add net1 type veth peer name other")
    stranger = link_view("net1", ns) if case == "name taken in the pod" else None

    with pytest.raises(AttachError) as err:
        attach(plan, net.netns_path(ns))

    message = str(err.value)
    assert f"claim team-a/claim-{nic}" in message and f"device dev-{nic}" in message
    assert cause in message
    assert link_view(nic) == before
    if stranger is None:
        assert not has_link("net1", ns)
    else:
        assert link_view("net1", ns) == stranger


@pytest.mark.parametrize("case", ["unreachable gateway", "mtu above the parent's"])
def test_failed_macvlan_attach_leaves_no_child(net: Lab, case: str) -> None:
    parent = net.new_nic()
    ns = net.new_netns()
    if case == "unreachable gateway":
        plan = plan_for(
            parent, mode="macvlan", routes=(Route(destination="0.0.0.0/0", gateway="10.99.0.1"),)
        )
    else:
        plan = plan_for(parent, mode="macvlan", mtu=9000)
    with pytest.raises(AttachError, match=f"claim team-a/claim-{parent} device dev-{parent}"):
        attach(plan, net.netns_path(ns))
    assert not has_link("net1", ns)


def test_attach_into_a_missing_netns_is_an_attach_error(net: Lab) -> None:
    nic = a_nic(net)
    before = link_view(nic)
    with pytest.raises(AttachError, match="does not exist"):
        attach(plan_for(nic), f"/var/run/netns/mnt-missing-{uid()}")
    assert link_view(nic) == before


def test_dead_netns_with_a_veth_is_reported_gone(net: Lab) -> None:
    nic = a_nic(net)
    ns = net.new_netns()
    plan = plan_for(nic)
    result = attach(plan, net.netns_path(ns))
    sh(f"ip netns del {ns}")

    assert restore.recover_from_dead_netns(plan, host=result.host) is restore.Recovery.DEVICE_GONE
    with pytest.raises(RestoreError, match="deleted together with the pod's network namespace"):
        restore.detach(plan, net.netns_path(ns), host=result.host)


def test_dead_netns_macvlan_needs_nothing(net: Lab) -> None:
    parent = net.new_nic()
    plan = plan_for(parent, mode="macvlan")
    outcome = restore.recover_from_dead_netns(plan)
    assert outcome is restore.Recovery.NOTHING_TO_RESTORE


def test_physical_nic_back_from_a_dead_netns_is_restored(net: Lab) -> None:
    """Uses `fake_netns_death_physical`: veth pairs die with their namespace, physical NICs fall
    back to the host under their pod-side name; only the latter is what we must handle here."""
    nic = a_nic(net)
    ns = net.new_netns()
    before = link_view(nic)
    pod_name = f"mnq{uid()}"  # it lands in the shared host namespace: keep it unique
    plan = plan_for(nic, pod_ifname=pod_name)
    result = attach(plan, net.netns_path(ns))
    fake_netns_death_physical(ns, pod_name)
    assert has_link(pod_name)

    assert restore.recover_from_dead_netns(plan, host=result.host) is restore.Recovery.RESTORED
    assert link_view(nic) == before
    assert not has_link(pod_name)


async def test_ten_parallel_attaches_through_the_async_mover(net: Lab) -> None:
    nics = [a_nic(net) for _ in range(10)]
    spaces = [net.new_netns() for _ in range(10)]
    before = {nic: link_view(nic) for nic in nics}
    plans = [plan_for(nic) for nic in nics]
    mover = executor.NetlinkMover()
    gaps: list[float] = []

    async def ticker() -> None:  # the event loop must stay free while the kernel works
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(mover.attach(p, net.netns_path(ns)) for p, ns in zip(plans, spaces, strict=True))
        )
        elapsed = time.perf_counter() - started
        tick.cancel()
        for ns in spaces:
            assert link_view("net1", ns)["addresses"][0][:2] == ("10.77.0.2", 24)
        assert elapsed < 2.0, "ten attaches must fit in one NRI deadline"
        # Ten moves run on the loop one after another would stall it for 10 x ~25 ms.
        assert max(gaps) < 0.15, f"event loop stalled for {max(gaps):.3f} s"
        await asyncio.gather(
            *(
                mover.detach(p, net.netns_path(ns), r.host)
                for p, ns, r in zip(plans, spaces, results, strict=True)
            )
        )
    finally:
        mover.close()
    assert {nic: link_view(nic) for nic in nics} == before


def test_ipv6_addresses_and_routes_come_back(net: Lab) -> None:
    net24, _ = host_subnet()
    n = net24.replace(".", ":").replace("100:", "")
    nic = net.new_nic(
        addresses=(f"{net24}.10/24", f"fd6d:{n}::10/64", f"fd6d:{n}::11/64"),
        routes=(f"fd6e:{n}::/48 via fd6d:{n}::1", f"fd6f:{n}::/48 via fd6d:{n}::1 metric 7"),
    )
    ns = net.new_netns()
    before = link_view(nic)
    assert len(before["routes"]) == 2
    plan = plan_for(
        nic,
        addresses=("2001:db8:5::2/64",),
        routes=(Route(destination="2001:db8:6::/48", gateway="2001:db8:5::1"),),
    )
    result = attach(plan, net.netns_path(ns))
    inside = link_view("net1", ns)
    assert inside["addresses"] == [("2001:db8:5::2", 64, None, False, None, ("nodad",), "global")]
    assert [r[:4] for r in inside["routes"]] == [("2001:db8:6::/48", "2001:db8:5::1", 1024, None)]
    restore.detach(plan, net.netns_path(ns), host=result.host)
    assert link_view(nic) == before


async def test_async_recover_of_a_dead_veth_netns_says_device_gone(net: Lab) -> None:
    nic = a_nic(net)
    ns = net.new_netns()
    plan = plan_for(nic)
    mover = executor.NetlinkMover()
    try:
        result = await mover.attach(plan, net.netns_path(ns))
        sh(f"ip netns del {ns}")
        attachment = Attachment(
            plan_key=plan.key,
            pod_uid="pod-uid",
            pod="team-a/pod",
            netns=net.netns_path(ns),
            phase="attached",
            pod_ifindex=result.ifindex,
            host=result.host,
        )
        assert await mover.recover(plan, attachment) == "device-gone"
    finally:
        mover.close()


@dataclass(frozen=True)
class Net28:
    """A /28 of a documentation range: `net` in CIDR form, `ip(n)` its n-th address."""

    base: str  # "198.51.100"
    start: int  # 0, 16, ... 240

    @property
    def net(self) -> str:
        return f"{self.base}.{self.start}/28"

    def ip(self, n: int) -> str:
        return f"{self.base}.{self.start + n}"


def doc_subnets(count: int) -> list[Net28]:
    """`count` distinct random /28s from the documentation ranges (198.51.100.0/24,
    203.0.113.0/24; never 192.0.2.0/24, the uplink here): concurrent runs share the host's
    routing tables, and IPv4 routes with the same prefix and metric collide."""
    picks = random.sample(range(32), count)
    return [Net28(("198.51.100", "203.0.113")[n // 16], (n % 16) * 16) for n in picks]


def doc6() -> str:
    """A random 2001:db8:xxxx prefix (documentation range) for one test."""
    return f"2001:db8:{random.randrange(0x1000, 0xFFFF):x}"


def test_everything_the_readme_promises_comes_back_exact(net: Lab) -> None:
    a, b, c, d, e = doc_subnets(5)
    v6 = doc6()
    other = net.new_nic(addresses=(f"{d.ip(2)}/28",))  # the second path of the multipath routes
    nic = net.new_nic()
    bridge = f"rsb{uid()}"
    sh(f"ip link add {bridge} type bridge && ip link set {bridge} up")
    net.links.append(bridge)
    lines = [
        f"ip link set {nic} master {bridge}",
        f"ip link set {nic} addrgenmode none",
        f"ip addr add {a.ip(1)}/28 brd + dev {nic} label {nic}:rs noprefixroute",
        f"ip addr add {a.ip(2)}/28 dev {nic}",
        f"ip addr add fe80::{random.randrange(1, 0xFFFF):x}:1/64 dev {nic} nodad",
        f"ip addr add {v6}::5/64 dev {nic} nodad noprefixroute",
        f"ip route add {a.net} dev {nic} scope link metric 5",
        f"ip route add {b.net} via {a.ip(14)} dev {nic} table 100 metric 7 onlink",
        f"ip route add {c.net} proto static nexthop via {a.ip(13)} dev {nic} weight 2"
        f" nexthop via {d.ip(1)} dev {other}",
        f"ip route add {e.net} via {a.ip(12)} dev {nic} mtu 1300 advmss 1200",
        f"ip -6 route add {v6}:1::/64 dev {nic} metric 300",
        f"ip -6 route add {v6}:2::/64 nexthop via fe80::99 dev {nic}"
        f" nexthop via fe80::98 dev {other}",
        f"ip -6 route add {v6}:3::/64 via fe80::1 dev {nic} table 100 metric 9 pref high",
    ]
    for line in lines:
        sh(line)
    before, other_before = link_view(nic), link_view(other)
    assert before["master"] == bridge and before["addrgenmode"] == "none"
    assert any("fe80::" in x[0] for x in before["addresses"])
    assert len(before["routes"]) == 7
    ns = net.new_netns()
    plan = plan_for(nic, addresses=(f"{v6}:9::2/64",), routes=(), host=host_state(nic))

    for _ in range(2):  # the second cycle starts from the restored state
        result = attach(plan, net.netns_path(ns))
        assert link_view("net1", ns)["master"] is None
        restore.detach(plan, net.netns_path(ns), host=result.host)
        assert link_view(nic) == before
        assert link_view(other) == other_before


def test_detach_leaves_a_stranger_bearing_the_old_name_alone(net: Lab) -> None:
    """The kernel moves the NIC home under its pod-side name, then fails to rename it: the NIC
    is restored but for its name, the stranger untouched; once the name is free, a retry of the
    detach puts the name back too."""
    (a,) = doc_subnets(1)
    nic = net.new_nic(addresses=(f"{a.ip(1)}/28",))
    before = link_view(nic)
    ns = net.new_netns()
    pod_name = f"rsq{uid()}"  # it lands in the shared host namespace: keep it unique
    plan = plan_for(
        nic, pod_ifname=pod_name, addresses=(f"{a.ip(5)}/28",), routes=(), host=host_state(nic)
    )
    result = attach(plan, net.netns_path(ns))
    peer = f"rsp{uid()}"
    sh(f"ip link add {nic} type veth peer name {peer} && ip link set {nic} up")
    net.links.append(peer)
    stranger = link_view(nic)

    with pytest.raises(RestoreError) as err:
        restore.detach(plan, net.netns_path(ns), host=result.host)

    assert link_view(nic) == stranger
    message = str(err.value)
    assert f"claim team-a/claim-{nic} device dev-{nic}" in message
    assert f"is not device dev-{nic}" in message and f"stays named {pod_name}" in message
    assert link_view(pod_name) == {**before, "name": pod_name}

    sh(f"ip link del {nic}")
    restore.detach(plan, net.netns_path(ns), host=result.host)
    assert link_view(nic) == before
    assert not has_link(pod_name)


def test_failed_attach_leaves_a_stranger_with_the_old_name_and_index_alone(
    net: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = doc_subnets(1)
    nic = net.new_nic(addresses=(f"{a.ip(1)}/28",))
    before = link_view(nic)
    ns = net.new_netns()
    state = host_state(nic)
    pod_name = f"rsq{uid()}"
    plan = plan_for(nic, pod_ifname=pod_name, addresses=(f"{a.ip(5)}/28",), routes=(), host=state)
    peer = f"rsp{uid()}"
    seen: dict[str, object] = {}

    def stranger_then_fail(*_: object, **__: object) -> None:
        # While the NIC is in the pod, another link takes its name and (free on the host now)
        # its index; then the configuration in the pod fails and the NIC must go back.
        sh(f"ip link add {nic} index {state.ifindex} type veth peer name {peer}")
        net.links.append(peer)
        seen["stranger"] = link_view(nic)
        raise RtnlError(errno.ENETUNREACH, "add route (injected)")

    monkeypatch.setattr(attaching, "_configure_inside", stranger_then_fail)
    with pytest.raises(AttachError) as err:
        attach(plan, net.netns_path(ns))

    assert link_view(nic) == seen["stranger"]
    message = str(err.value)
    assert f"claim team-a/claim-{nic} device dev-{nic}" in message
    assert "giving the interface back also failed" in message and "File exists" in message
    assert f"is not device dev-{nic}" in message
    assert link_view(pod_name) == {**before, "name": pod_name}
