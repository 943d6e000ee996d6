"""Which host interfaces are never advertised on their own, and the reason given; no kernel.

Cases:
- the lower-device tree of every default-route interface, as a table of facts -> reasons:
  bond/bridge ports, vlan/macvlan/tunnel parents, recursively (a vlan over a bond over NICs),
  the uplinks of an Open vSwitch interface; never a veth's peer, an upper device, or a parent in
  another netns; a loop in a racy snapshot ends
- known overlay/CNI device names (flannel.1, vxlan.calico, cilium_*, kube-ipvs0, cni0, ...)
  whatever their kind, and look-alike names that are not
- an exact name in a PodNetwork overrides every exclusion, a glob ("*") does not
- the publish loop logs why an interface a network's pattern selects is not advertised, once
"""

from __future__ import annotations

import logging

import pytest
from publishdoubles import EmptyPool, Snapshots, StaticNetworks

from multinet.agent.publish import PublishLoop
from multinet.devices import exclusion
from multinet.devices.binding import NetworkSelector
from multinet.devices.model import HostSnapshot, Link
from multinet.devices.resolve import resolve

LO = Link(index=1, ifname="lo", loopback=True)


def link(index: int, ifname: str, kind: str = "", **kw: object) -> Link:
    return Link(index=index, ifname=ifname, kind=kind, **kw)  # type: ignore[arg-type]


def reasons(*links: Link, route: set[int]) -> dict[str, str]:
    snap = HostSnapshot(links=(LO, *links), default_route_ifindexes=frozenset(route))
    by_index = snap.by_index()
    return {by_index[i].ifname: why for i, why in exclusion.reasons(snap).items() if i != 1}


# --- the default route's lower-device tree ----------------------------------------------------

TREE_CASES = [
    pytest.param(
        [link(2, "bond0", "bond"), link(3, "eth1", master=2), link(4, "eth2", master=2)],
        {2},
        {
            "bond0": "default route",
            "eth1": "port of default-route interface bond0",
            "eth2": "port of default-route interface bond0",
        },
        id="bond slaves",
    ),
    pytest.param(
        [
            link(2, "br0", "bridge"),
            link(3, "exv0", "veth", master=2, peer=4),
            link(4, "exv1", "veth", peer=3),
        ],
        {2},
        {"br0": "default route", "exv0": "port of default-route interface br0"},
        id="bridge port, not the port's veth peer",
    ),
    pytest.param(
        [
            link(2, "eth1"),
            link(3, "eth2"),
            link(4, "bond0", "bond"),
            link(5, "bond0.100", "vlan", peer=4),
        ],
        {5},
        {
            "bond0.100": "default route",
            "bond0": "parent of default-route interface bond0.100",
        },
        id="vlan parent without ports",
    ),
    pytest.param(
        [
            link(2, "eth1", master=4),
            link(3, "eth2", master=4),
            link(4, "bond0", "bond"),
            link(5, "bond0.100", "vlan", peer=4),
        ],
        {5},
        {
            "bond0.100": "default route",
            "bond0": "parent of default-route interface bond0.100",
            "eth1": "port of bond0, below default-route interface bond0.100",
            "eth2": "port of bond0, below default-route interface bond0.100",
        },
        id="vlan over bond over NICs, recursively",
    ),
    pytest.param(
        [
            link(2, "exlow", "veth", peer=3),
            link(3, "expeer", "veth", peer=2),
            link(4, "mv0", "macvlan", peer=2),
        ],
        {4},
        {"mv0": "default route", "exlow": "parent of default-route interface mv0"},
        id="macvlan over a veth: the veth, not its peer",
    ),
    pytest.param(
        [
            link(2, "ens3"),
            link(3, "br1", "bridge"),
            link(4, "ens4", master=3),
            link(5, "mv0", "macvtap", peer=3),
        ],
        {5},
        {
            "mv0": "default route",
            "br1": "parent of default-route interface mv0",
            "ens4": "port of br1, below default-route interface mv0",
        },
        id="macvtap over a bridge over a NIC",
    ),
    pytest.param(
        [link(2, "eth1"), link(3, "gre1", "gre", peer=2)],
        {3},
        {"gre1": "default route", "eth1": "parent of default-route interface gre1"},
        id="tunnel underlay",
    ),
    pytest.param(
        [
            link(2, "eth0"),
            link(3, "eth0.200", "vlan", peer=2),
            link(4, "br-data", "bridge"),
            link(5, "eth9", master=4),
        ],
        {2},
        {"eth0": "default route"},
        id="upper devices and unrelated bridges stay",
    ),
    pytest.param(
        [link(2, "eth1"), link(3, "mv0", "macvlan", peer=2, peer_netns=True)],
        {3},
        {"mv0": "default route"},
        id="parent in another netns is not ours",
    ),
    pytest.param(
        [link(2, "exv0", "veth", peer=3), link(3, "exv1", "veth", peer=2)],
        {2},
        {"exv0": "default route"},
        id="a veth's peer is no lower device",
    ),
    pytest.param(
        [
            link(2, "ovs-system", "openvswitch"),
            link(3, "br-ex", "openvswitch"),
            link(4, "eth1", master=2),
            link(5, "eth2"),
        ],
        {3},
        {
            "br-ex": "default route",
            "eth1": "port of the Open vSwitch datapath of default-route interface br-ex",
            "ovs-system": "known overlay/CNI device (Open vSwitch)",
        },
        id="Open vSwitch uplink",
    ),
    pytest.param(
        [
            link(2, "eth1"),
            link(3, "eth2", master=2),
            link(4, "v6br", "bridge"),
            link(5, "eth3", master=4),
        ],
        {2, 4},
        {
            "eth1": "default route",
            "eth2": "port of default-route interface eth1",
            "v6br": "default route",
            "eth3": "port of default-route interface v6br",
        },
        id="IPv4 and IPv6 default routes on different devices",
    ),
    pytest.param(
        [link(2, "br0", "bridge", master=3), link(3, "br1", "bridge", master=2)],
        {2},
        {"br0": "default route", "br1": "port of default-route interface br0"},
        id="a loop in a racy snapshot ends",
    ),
    pytest.param(
        [link(2, "eth1", master=99)],
        {42},
        {},
        id="default-route index not in the snapshot",
    ),
]


@pytest.mark.parametrize(("links", "route", "expected"), TREE_CASES)
def test_default_route_lower_device_tree(
    links: list[Link], route: set[int], expected: dict[str, str]
) -> None:
    assert reasons(*links, route=route) == expected


# --- known overlay/CNI devices ----------------------------------------------------------------

KNOWN = [
    ("flannel.1", "vxlan", "flannel"),
    ("flannel.4096", "vxlan", "flannel"),
    ("flannel-wg", "wireguard", "flannel"),
    ("vxlan.calico", "vxlan", "Calico"),
    ("vxlan-v6.calico", "vxlan", "Calico"),
    ("tunl0", "ipip", "kernel IPIP / Calico"),
    ("cilium_host", "veth", "Cilium"),
    ("cilium_vxlan", "vxlan", "Cilium"),
    ("kube-ipvs0", "dummy", "kube-proxy IPVS"),
    ("cni0", "bridge", "CNI bridge plugin"),
    ("docker0", "bridge", "Docker"),
    ("weave", "bridge", "Weave Net"),
    ("genev_sys_6081", "geneve", "Open vSwitch"),
    ("vxlan_sys_4789", "vxlan", "Open vSwitch"),
    ("antrea-gw0", "openvswitch", "Antrea"),
    ("nodelocaldns", "dummy", "NodeLocal DNSCache"),
    ("sit0", "sit", "kernel fallback tunnel"),
]


@pytest.mark.parametrize(("ifname", "kind", "owner"), KNOWN)
def test_known_overlay_and_cni_devices_whatever_their_kind(
    ifname: str, kind: str, owner: str
) -> None:
    assert reasons(link(2, ifname, kind), route=set()) == {
        ifname: f"known overlay/CNI device ({owner})"
    }


@pytest.mark.parametrize("ifname", ["flannel", "cilium", "cni1", "eth0.cni0", "xweave", "Tunl0"])
def test_look_alike_names_are_not_known_devices(ifname: str) -> None:
    assert exclusion.known_device(ifname) is None
    assert reasons(link(2, ifname), route=set()) == {}


def test_a_route_reason_wins_over_a_known_name() -> None:
    assert reasons(link(2, "cni0", "bridge"), route={2}) == {"cni0": "default route"}


# --- the exact-name override ------------------------------------------------------------------


def _bonded() -> HostSnapshot:
    return HostSnapshot(
        links=(
            LO,
            link(2, "bond0", "bond"),
            link(3, "eth1", master=2),
            link(4, "flannel.1", "vxlan"),
            link(5, "ens9"),
        ),
        default_route_ifindexes=frozenset({2}),
    )


def test_everything_under_a_glob_leaves_the_plumbing_out() -> None:
    res = resolve(_bonded(), [NetworkSelector(name="all", interfaces=("*",))])
    assert [d.ifname for d in res.devices] == ["ens9"]
    assert set(res.excluded) == {"lo", "bond0", "eth1", "flannel.1"}


def test_an_exact_name_is_an_explicit_choice_and_overrides_the_exclusion() -> None:
    nets = [NetworkSelector(name="all", interfaces=("*", "eth1", "flannel.1"))]
    res = resolve(_bonded(), nets)
    assert sorted(d.ifname for d in res.devices) == ["ens9", "eth1", "flannel.1"]
    assert set(res.excluded) == {"lo", "bond0"}


def test_a_pattern_that_happens_to_match_one_name_is_still_a_pattern() -> None:
    res = resolve(_bonded(), [NetworkSelector(name="n", interfaces=("eth[1]", "flannel.?"))])
    assert [d.ifname for d in res.devices] == ["ens9"]  # unbound: no network selects it
    assert {"eth1", "flannel.1"} <= set(res.excluded)


# --- the agent's log --------------------------------------------------------------------------


async def test_the_agent_says_once_why_a_selected_interface_is_not_advertised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nets = StaticNetworks(selectors=(NetworkSelector(name="all", interfaces=("*",)),))
    loop = PublishLoop(inventory=Snapshots(_bonded()), networks=nets, publisher=EmptyPool())
    with caplog.at_level(logging.INFO, logger="multinet.agent.publish"):
        await loop.publish_once()
        await loop.publish_once()
    told = [r.getMessage() for r in caplog.records if "not advertised" in r.getMessage()]
    assert told == [
        "interface bond0 is not advertised (default route) although PodNetwork all selects it"
        " by pattern; name it exactly to advertise it",
        "interface eth1 is not advertised (port of default-route interface bond0) although"
        " PodNetwork all selects it by pattern; name it exactly to advertise it",
        "interface flannel.1 is not advertised (known overlay/CNI device (flannel)) although"
        " PodNetwork all selects it by pattern; name it exactly to advertise it",
        "interface lo is not advertised (loopback) although PodNetwork all selects it by"
        " pattern; name it exactly to advertise it",
    ]
