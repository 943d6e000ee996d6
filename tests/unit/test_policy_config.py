"""Routing policy, tuning, dual stack, macvlan and CNI fields: validation and planning.

Each bad value is rejected with the field named (PodNetwork parameters at the controller, claim
config at prepare); the plan carries what the pod must get, in kernel terms.
"""

from __future__ import annotations

from typing import Any

import pytest

from multinet import planning
from multinet.api import claimconfig, parameters
from multinet.api.allocation import PodRef, Result
from multinet.api.claimconfig import OpaqueConfig
from multinet.errors import ConfigError
from multinet.plans import AttachPlan, ClaimRef, PreparedClaim

CLAIM = ClaimRef(namespace="ns", name="web", uid="u-1")
RESULT = Result(request="nic", pool="node-a", device="eth1", share_id=None)
POD = PodRef("web-0", "p-1")
DUAL = {
    "type": "pool",
    "subnets": [
        {"subnet": "198.51.100.0/24", "gateway": "198.51.100.1"},
        {"subnet": "2001:db8:1::/64", "gateway": "2001:db8:1::1"},
    ],
}


def params(**extra: Any) -> parameters.NetworkParameters:
    return parameters.parse({"interfaces": {"names": ["eth*"]}, **extra})


def problems(**extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        params(**extra)
    return info.value.errors


def effective(net: parameters.NetworkParameters, *claim: Any) -> claimconfig.EffectiveConfig:
    configs = [OpaqueConfig(doc, i) for i, doc in enumerate(claim)]
    return claimconfig.effective_config(net, [], configs, claim="ns/web", request="nic")


def plan(
    net: parameters.NetworkParameters, *claim: Any, addresses: tuple[str, ...] = ()
) -> AttachPlan:
    return planning.attach_plan(
        CLAIM,
        RESULT,
        network="blue",
        host_ifname="eth1",
        eff=effective(net, *claim),
        host=None,
        addresses=addresses,
        reserved=(),
        pod=POD,
    )


def test_routes_take_table_scope_source_metric_and_onlink_into_the_plan() -> None:
    route = {
        "destination": "203.0.113.0/24",
        "gateway": "198.51.100.254",
        "table": 100,
        "source": "198.51.100.7",
        "metric": 50,
        "onlink": True,
    }
    net = params(ipam={"type": "pool", "subnet": "198.51.100.0/25"}, routes=[route])
    (out,) = plan(net).routes
    assert (out.table, out.metric, out.source, out.onlink) == (100, 50, "198.51.100.7", True)
    link = plan(params(routes=[{"destination": "203.0.113.0/24", "scope": "link"}])).routes[0]
    assert link.scope == 253 and link.table is None


BAD_PARAMETERS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "table 255",
        {"routes": [{"destination": "10.0.0.0/8", "table": 255}]},
        ["parameters.routes[0].table: must not be 255 (the kernel's local table)"],
    ),
    (
        "table 0",
        {"routes": [{"destination": "10.0.0.0/8", "table": 0}]},
        ["parameters.routes[0].table: must be between 1 and 4294967295, got 0"],
    ),
    (
        "onlink without gateway",
        {"routes": [{"destination": "10.0.0.0/8", "onlink": True}]},
        ["parameters.routes[0].onlink: needs a gateway (onlink says the gateway is on the link)"],
    ),
    (
        "source of the other family",
        {"routes": [{"destination": "10.0.0.0/8", "source": "2001:db8::1"}]},
        ["parameters.routes[0].source: 2001:db8::1 is IPv6 but destination 10.0.0.0/8 is IPv4"],
    ),
    (
        "gateway with scope link",
        {"routes": [{"destination": "10.0.0.0/8", "gateway": "10.1.0.1", "scope": "link"}]},
        [
            "parameters.routes[0].scope: link is only for routes without a gateway "
            "(a route via a gateway has scope universe)"
        ],
    ),
    (
        "rule without from or to",
        {"rules": [{"priority": 100, "table": 100}]},
        ["parameters.rules[0]: needs from or to (the addresses the rule selects)"],
    ),
    (
        "rule families differ",
        {"rules": [{"priority": 100, "from": "10.0.0.0/8", "to": "2001:db8::/32", "table": 7}]},
        ["parameters.rules[0].to: 2001:db8::/32 is IPv6 but from 10.0.0.0/8 is IPv4"],
    ),
    (
        "rule priority of the kernel's own rules",
        {"rules": [{"priority": 32766, "from": "10.0.0.0/8", "table": 7}]},
        ["parameters.rules[0].priority: must be between 1 and 32765, got 32766"],
    ),
    (
        "two rules, one priority",
        {
            "rules": [
                {"priority": 10, "from": "10.0.0.0/8", "table": 7},
                {"priority": 10, "to": "10.0.0.0/8", "table": 8},
            ]
        },
        ["parameters.rules[1].priority: 10 is also rules[0]'s"],
    ),
    (
        "neighbour with a multicast MAC",
        {"neighbors": [{"address": "198.51.100.9", "mac": "01:00:5e:00:00:01"}]},
        [
            "parameters.neighbors[0].mac: must be a unicast MAC address (first octet even), "
            'got "01:00:5e:00:00:01"'
        ],
    ),
    (
        "sysctl outside the network namespace",
        {"sysctls": {"kernel.pid_max": "1"}},
        [
            "parameters.sysctls.kernel.pid_max: must be a network-namespace sysctl: "
            "net.ipv4.conf.<interface>.<name>, net.ipv6.conf.<interface>.<name>, "
            "net.ipv4.neigh.<interface>.<name>, net.ipv6.neigh.<interface>.<name>, "
            "or another net.ipv4.* / net.ipv6.* key"
        ],
    ),
    (
        "sysctl value over two lines",
        {"sysctls": {"net.ipv4.ip_forward": "1\n0"}},
        [
            "parameters.sysctls.net.ipv4.ip_forward: must be a non-empty one-line string, "
            'got "1\\n0"'
        ],
    ),
    (
        "ethtool feature as a string",
        {"ethtool": {"features": {"rx-gro": "off"}}},
        ['parameters.ethtool.features.rx-gro: must be true or false, got "off"'],
    ),
    (
        "ethtool feature name",
        {"ethtool": {"features": {"TX Checksum": False}}},
        [
            "parameters.ethtool.features.TX Checksum: must be lowercase letters, digits, '-' "
            "and '_', not starting with '-' (a name as `ethtool -k` prints it, like "
            "tx-checksumming)"
        ],
    ),
    (
        "two IPv4 pools",
        {
            "ipam": {
                "type": "pool",
                "subnets": [{"subnet": "198.51.100.0/24"}, {"subnet": "203.0.113.0/24"}],
            }
        },
        [
            "parameters.ipam.subnets[1].subnet: a second IPv4 pool (subnets[0] is one); "
            "give at most one pool per family"
        ],
    ),
    (
        "subnet beside subnets",
        {"ipam": {**DUAL, "subnet": "203.0.113.0/24"}},
        [
            "parameters.ipam.subnet: cannot be combined with ipam.subnets; "
            "give each pool its own entry in ipam.subnets"
        ],
    ),
    (
        "a pool's gateway outside its subnet",
        {"ipam": {"type": "pool", "subnets": [{"subnet": "2001:db8::/64", "gateway": "10.0.0.1"}]}},
        ["parameters.ipam.subnets[0].gateway: 10.0.0.1 is IPv4 but subnet 2001:db8::/64 is IPv6"],
    ),
    (
        "macvlanMode on host-device",
        {"macvlanMode": "vepa"},
        ["parameters.macvlanMode: only allowed when mode is macvlan (mode is host-device)"],
    ),
    (
        "unknown macvlanMode",
        {"mode": "macvlan", "macvlanMode": "source"},
        [
            "parameters.macvlanMode: must be 'bridge', 'private', 'vepa' or 'passthru', "
            'got "source"'
        ],
    ),
    (
        "passthru shares",
        {"mode": "macvlan", "macvlanMode": "passthru", "interfacesPerParent": 4},
        [
            "parameters.interfacesPerParent: must be 1 with macvlanMode passthru "
            "(the parent takes one child only), got 4"
        ],
    ),
    (
        "cni without its config",
        {"mode": "cni"},
        ["parameters.cni: is required when mode is cni (cni.config: a CNI config or conflist)"],
    ),
    (
        "cni with multinet's ipam",
        {
            "mode": "cni",
            "cni": {"config": {"cniVersion": "1.0.0", "name": "n", "type": "macvlan"}},
            "ipam": {"type": "pool", "subnet": "198.51.100.0/24"},
        },
        [
            "parameters.ipam: not used when mode is cni; the CNI config's own ipam section "
            "hands out addresses"
        ],
    ),
]


@pytest.mark.parametrize(
    ("case", "extra", "expected"), BAD_PARAMETERS, ids=[b[0] for b in BAD_PARAMETERS]
)
def test_bad_parameters_name_the_field(
    case: str, extra: dict[str, Any], expected: list[str]
) -> None:
    assert problems(**extra) == expected


def test_a_gateway_outside_the_pool_is_accepted_with_onlink() -> None:
    pool = {"type": "pool", "subnet": "198.51.100.0/24"}
    far = {"destination": "203.0.113.0/24", "gateway": "198.18.100.1"}
    assert problems(ipam=pool, routes=[far]) == [
        "parameters.routes[0].gateway: 198.18.100.1 is outside subnet 198.51.100.0/24 "
        "(add onlink: true if it is reachable on the link anyway)"
    ]
    assert params(ipam=pool, routes=[{**far, "onlink": True}]).routes[0].onlink


def test_a_claim_layers_rules_neighbors_sysctls_and_ethtool_over_the_network() -> None:
    net = params(
        rules=[{"priority": 100, "from": "198.51.100.0/24", "table": 100}],
        sysctls={"net.ipv4.conf.net1.arp_ignore": "1"},
    )
    claim = {
        "interfaceName": "net1",
        "neighbors": [{"address": "198.51.100.9", "mac": "02:00:00:00:00:09"}],
        "sysctls": {"net.ipv6.conf.net1.accept_ra": 0},
        "ethtool": {"features": {"tx-checksumming": False}},
    }
    out = plan(net, claim)
    assert [(r.priority, r.source, r.table) for r in out.rules] == [(100, "198.51.100.0/24", 100)]
    assert [(n.address, n.mac) for n in out.neighbors] == [("198.51.100.9", "02:00:00:00:00:09")]
    # A claim's sysctls replace the network's as a whole, like every other layered field.
    assert [(s.path, s.value) for s in out.sysctls] == [
        (("net", "ipv6", "conf", "net1", "accept_ra"), "0")
    ]
    assert out.features == (("tx-checksumming", False),)


def test_a_sysctl_may_name_only_the_claims_own_interface() -> None:
    net = params(interfaceName="net1", sysctls={"net.ipv4.conf.eth0.arp_ignore": "1"})
    with pytest.raises(ConfigError) as info:
        plan(net)
    assert info.value.errors == [
        "sysctls[net.ipv4.conf.eth0.arp_ignore]: names interface eth0, but this claim's "
        "interface in the pod is net1 (a claim may set its own interface's keys, all and default)"
    ]
    dotted = params(interfaceName="net.1", sysctls={"net.ipv4.conf.net.1.rp_filter": "2"})
    assert plan(dotted).sysctls[0].path == ("net", "ipv4", "conf", "net.1", "rp_filter")


def test_default_route_takes_the_gateway_of_each_family_from_the_pools() -> None:
    net = params(ipam=DUAL, defaultRoute=True)
    out = plan(net, addresses=("198.51.100.7/24", "2001:db8:1::7/64"))
    assert out.default_route and out.default_gateways == ("198.51.100.1", "2001:db8:1::1")
    routed = params(defaultRoute=True, routes=[{"destination": "0.0.0.0/0", "gateway": "10.9.0.1"}])
    out = plan(routed)
    assert out.default_gateways == ("10.9.0.1",) and out.routes == ()


def test_default_route_without_a_gateway_is_a_prepare_error() -> None:
    with pytest.raises(ConfigError) as info:
        plan(params(), {"defaultRoute": True})
    assert info.value.errors == [
        "defaultRoute: needs a gateway: set ipam.gateway (or ipam.subnets[].gateway) of the "
        "PodNetwork, or a route to 0.0.0.0/0 or ::/0 via a gateway"
    ]


def test_only_one_claim_of_a_pod_takes_the_default_route() -> None:
    net = params(ipam=DUAL, defaultRoute=True)
    first = plan(net, addresses=("198.51.100.7/24",))
    other = ClaimRef(namespace="ns", name="other", uid="u-2")
    earlier = PreparedClaim(claim=CLAIM, pod_uids=("p-1",), plans=(first,))
    planning.check_one_default_route(CLAIM, [first], [])
    second = first.model_copy(update={"claim": other})
    with pytest.raises(ConfigError) as info:
        planning.check_one_default_route(other, [second], [earlier])
    assert str(info.value) == (
        "claim ns/other request nic: defaultRoute: the pod's default route is already taken by "
        "claim ns/web request nic; at most one claim request of a pod may set defaultRoute"
    )


def test_rules_may_name_only_the_pods_interfaces() -> None:
    net = params(
        interfaceName="net1",
        rules=[{"priority": 5, "from": "10.0.0.0/8", "iif": "net9", "table": 9}],
    )
    with pytest.raises(ConfigError, match=r"rules\[0\]\.iif: net9 is not an interface of the pod"):
        planning.check_rule_interfaces(CLAIM, [plan(net)])
    ok = params(
        interfaceName="net1", rules=[{"priority": 5, "to": "10.0.0.0/8", "oif": "eth0", "table": 9}]
    )
    planning.check_rule_interfaces(CLAIM, [plan(ok)])


def test_a_stable_mac_follows_the_pod_name_and_is_locally_administered() -> None:
    out = plan(params(mode="macvlan", stableMac=True))
    assert out.mac == planning.stable_mac(CLAIM, POD, "nic")
    first = int(out.mac[:2], 16)
    assert first & 0x02 and not first & 0x01
    other_pod = planning.stable_mac(CLAIM, PodRef("web-1", "p-2"), "nic")
    assert other_pod != out.mac
    assert plan(params(mode="macvlan", stableMac=True), {"mac": "02:aa:00:00:00:01"}).mac == (
        "02:aa:00:00:00:01"
    )


def test_macvlan_mode_and_capacity() -> None:
    net = params(mode="macvlan", macvlanMode="private", interfacesPerParent=8)
    assert plan(net).macvlan_mode == "private" and net.parent_capacity == 8
    assert params(mode="macvlan", macvlanMode="passthru").parent_capacity == 1
    assert params(mode="macvlan").parent_capacity == parameters.DEFAULT_INTERFACES_PER_PARENT


def test_a_cni_chain_shares_its_nic_unless_it_moves_it() -> None:
    bridge = {"cniVersion": "1.0.0", "name": "b", "plugins": [{"type": "macvlan"}]}
    moved = {"cniVersion": "1.0.0", "name": "h", "type": "host-device"}
    assert params(mode="cni", cni={"config": bridge}).shares_parent
    assert not params(mode="cni", cni={"config": moved}).shares_parent
    out = plan(params(mode="cni", cni={"config": bridge}), {"addresses": ["198.51.100.5/24"]})
    assert out.cni is not None and out.cni.ips == ("198.51.100.5/24",)
    assert out.cni.pod_name == "web-0" and out.cni.config == bridge


def test_a_claim_cannot_set_routes_on_a_cni_network() -> None:
    net = params(
        mode="cni", cni={"config": {"cniVersion": "1.0.0", "name": "n", "type": "macvlan"}}
    )
    with pytest.raises(ConfigError) as info:
        effective(net, {"routes": [{"destination": "10.0.0.0/8"}]})
    assert info.value.errors == [
        "config[0].routes: not used when the PodNetwork's mode is cni; "
        "configure it in the CNI config"
    ]
