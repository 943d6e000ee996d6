"""Attach with routing policy and tuning, in real namespaces: what the pod shows, what comes home.

The pod namespace gets an `eth0` with a default route first, as the cluster network would set it;
the claim's interface then brings routes in another table, a rule, a permanent neighbour,
sysctls, offloads and (defaultRoute) the pod's default route. After detach the host NIC shows
exactly what it showed before, offloads included.
"""

from __future__ import annotations

import json

import pytest
from netfixtures import Lab, lab, link_view, sh

from multinet.errors import AttachError, ConfigError
from multinet.netlink import hoststate, netns, plancheck
from multinet.netlink.attach import attach
from multinet.netlink.restore import detach
from multinet.plans import AttachPlan, ClaimRef, HostState, Neighbor, Route, Rule, Sysctl

pytestmark = pytest.mark.root


@pytest.fixture
def net() -> Lab:  # type: ignore[misc]
    with lab() as it:
        yield it


def pod_with_primary(net: Lab) -> str:
    """A pod namespace whose eth0 carries 203.0.113.2/24 and the default route via .1."""
    ns = net.new_netns()
    primary = net.new_nic(addresses=())
    sh(f"ip link set {primary} netns {ns} name eth0")
    sh(f"ip -n {ns} addr add 203.0.113.2/24 dev eth0 && ip -n {ns} link set eth0 up")
    sh(f"ip -n {ns} route add default via 203.0.113.1 dev eth0")
    return ns


def host_state(nic: str) -> HostState:
    rt, _ = netns.host()
    link = rt.get_link(name=nic)
    assert link is not None
    return hoststate.read_link(rt, link)


def policy_plan(nic: str, **extra: object) -> AttachPlan:
    fields: dict[str, object] = {
        "claim": ClaimRef(namespace="team-a", name=f"claim-{nic}", uid=f"uid-{nic}"),
        "request": "nic",
        "pool": "node-1",
        "device": f"dev-{nic}",
        "network": "storage",
        "mode": "host-device",
        "host_ifname": nic,
        "pod_ifname": "net1",
        "addresses": ("198.51.100.7/24",),
        "routes": (
            Route(destination="198.18.100.0/24", gateway="198.51.100.1", table=100, metric=20),
            Route(destination="198.18.101.0/24", gateway="198.18.0.1", onlink=True),
        ),
        "rules": (Rule(priority=100, source="198.51.100.0/24", table=100),),
        "neighbors": (Neighbor(address="198.51.100.9", mac="02:00:00:00:00:09"),),
        "sysctls": (
            Sysctl(path=("net", "ipv4", "conf", "net1", "arp_ignore"), value="1"),
            Sysctl(path=("net", "ipv4", "ip_forward"), value="1"),
        ),
        "features": (("tx-checksumming", False),),
        "default_route": True,
        "default_gateways": ("198.51.100.1",),
        **extra,
    }
    return AttachPlan.model_validate(fields)


def features_of(ifname: str, ns: str | None = None) -> str:
    prefix = f"ip netns exec {ns} " if ns else ""
    return sh(f"{prefix}ethtool -k {ifname}")


def test_the_pod_shows_tables_rules_neighbours_sysctls_offloads_and_its_new_default(
    net: Lab,
) -> None:
    nic = net.new_nic(addresses=("100.64.250.10/24",))
    before_link, before_features = link_view(nic), features_of(nic)
    ns = pod_with_primary(net)
    plan = policy_plan(nic)
    result = attach(plan, net.netns_path(ns))

    table = sh(f"ip -n {ns} route show table 100")
    assert "198.18.100.0/24 via 198.51.100.1 dev net1 metric 20" in table
    assert "198.18.101.0/24 via 198.18.0.1 dev net1 onlink" in sh(f"ip -n {ns} route")
    assert "100:\tfrom 198.51.100.0/24 lookup 100" in sh(f"ip -n {ns} rule")
    neigh = sh(f"ip -n {ns} neigh show dev net1")
    assert "198.51.100.9 lladdr 02:00:00:00:00:09 PERMANENT" in neigh
    assert sh(f"ip netns exec {ns} sysctl -n net.ipv4.conf.net1.arp_ignore").strip() == "1"
    assert sh(f"ip netns exec {ns} sysctl -n net.ipv4.ip_forward").strip() == "1"
    assert "tx-checksumming: off" in features_of("net1", ns)
    defaults = json.loads(sh(f"ip -j -n {ns} route show default"))
    assert [(d["gateway"], d["dev"]) for d in defaults] == [("198.51.100.1", "net1")]
    # The primary network keeps its own subnet route.
    assert "203.0.113.0/24 dev eth0" in sh(f"ip -n {ns} route")
    assert result.host is not None and ("tx-checksum-ip-generic", True) in result.host.features

    detach(plan, net.netns_path(ns), host=result.host)
    assert link_view(nic) == before_link
    assert features_of(nic) == before_features


def test_a_macvlan_child_gets_the_networks_mode(net: Lab) -> None:
    parent = net.new_nic()
    ns = pod_with_primary(net)
    plan = policy_plan(
        parent,
        mode="macvlan",
        macvlan_mode="private",
        routes=(),
        rules=(),
        neighbors=(),
        sysctls=(),
        features=(),
        default_route=False,
        default_gateways=(),
    )
    attach(plan, net.netns_path(ns))
    (child,) = json.loads(sh(f"ip -d -j -n {ns} link show net1"))
    assert child["linkinfo"]["info_kind"] == "macvlan"
    assert child["linkinfo"]["info_data"]["mode"] == "private"
    detach(plan, net.netns_path(ns))


def test_an_unknown_sysctl_fails_the_attach_and_the_nic_comes_home_exact(net: Lab) -> None:
    nic = net.new_nic(addresses=("100.64.251.10/24",))
    before = link_view(nic)
    ns = pod_with_primary(net)
    bad = (Sysctl(path=("net", "ipv4", "conf", "net1", "no_such_knob"), value="1"),)
    with pytest.raises(AttachError, match=r"net\.ipv4\.conf\.net1\.no_such_knob"):
        attach(policy_plan(nic, sysctls=bad), net.netns_path(ns))
    assert link_view(nic) == before
    # The pod's default route is still the cluster network's.
    assert "default via 203.0.113.1 dev eth0" in sh(f"ip -n {ns} route")


def test_a_fixed_offload_fails_the_attach_with_the_feature_named(net: Lab) -> None:
    nic = net.new_nic(addresses=("100.64.252.10/24",))
    before, before_features = link_view(nic), features_of(nic)
    ns = pod_with_primary(net)
    with pytest.raises(AttachError, match=r"rx-lro.*fixed"):
        attach(policy_plan(nic, features=(("rx-lro", True),)), net.netns_path(ns))
    assert link_view(nic) == before
    assert features_of(nic) == before_features


def test_prepare_checks_sysctls_and_offloads_against_this_nodes_kernel(net: Lab) -> None:
    nic = net.new_nic()
    plancheck.check(policy_plan(nic))  # every key and feature of the plan exists here
    bad = policy_plan(
        nic,
        sysctls=(Sysctl(path=("net", "ipv4", "conf", "net1", "arp_ignor"), value="1"),),
        features=(("tx-checksuming", False), ("rx-lro", True)),
    )
    with pytest.raises(ConfigError) as info:
        plancheck.check(bad)
    assert info.value.errors == [
        "sysctls[net.ipv4.conf.net1.arp_ignor]: no such sysctl in this node's kernel",
        "ethtool.features.tx-checksuming: not a feature this node's kernel knows "
        "(did you mean tx-checksumming?)",
        f"ethtool.features.rx-lro: fixed off on {nic}; it cannot be changed",
    ]


async def test_prepare_checks_only_plans_that_ask_for_sysctls_or_offloads(net: Lab) -> None:
    nic = net.new_nic()
    plain = policy_plan(nic, sysctls=(), features=())
    assert not plancheck.needed(plain)
    await plancheck.check_async(plain)
    bad = policy_plan(nic, features=(("tx-checksuming", False),))
    assert plancheck.needed(bad)
    with pytest.raises(ConfigError, match="did you mean tx-checksumming"):
        await plancheck.check_async(bad)
