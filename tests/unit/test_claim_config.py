"""Opaque claim/class config for driver multinet.dev and the effective-config merge.

Cases: a table of bad configs with the exact messages (claim, request and field named); merge
precedence PodNetwork < DeviceClass < claim; request scoping (incl. subrequests); configs of
other drivers ignored when splitting ``status.allocation.devices.config``.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from multinet.api import claimconfig, fields, parameters
from multinet.api.claimconfig import OpaqueConfig
from multinet.errors import ConfigError

NONE_NET = parameters.parse(
    {
        "interfaces": {"names": ["eth*"]},
        "interfaceName": "net0",
        "mtu": 1500,
        "routes": [{"destination": "10.0.0.0/8"}],
    }
)
POOL_NET = parameters.parse(
    {"interfaces": {"names": ["eth*"]}, "ipam": {"type": "pool", "subnet": "10.1.0.0/24"}}
)
FULL_POOL_NET = parameters.parse(
    {
        "interfaces": {"names": ["eth*"]},
        "ipam": {
            "type": "pool",
            "subnet": "10.1.0.0/24",
            "gateway": "10.1.0.1",
            "exclude": ["10.1.0.3", "10.1.0.64/28"],
        },
    }
)
SUBJECT = "claim default/web request nic: "


def merge(*claim: Any, net: parameters.NetworkParameters = NONE_NET) -> claimconfig.EffectiveConfig:
    configs = [OpaqueConfig(doc, i) for i, doc in enumerate(claim)]
    return claimconfig.effective_config(net, [], configs, claim="default/web", request="nic")


BAD: list[tuple[str, Any, list[str]]] = [
    ("not an object", "mtu=1500", ['config[0]: must be an object, got "mtu=1500"']),
    ("unknown field", {"vlan": 5}, ["config[0].vlan: unknown field"]),
    ("snake case key", {"interface_name": "x"}, ["config[0].interface_name: unknown field"]),
    (
        "ifname too long",
        {"interfaceName": "x" * 16},
        [f'config[0].interfaceName: must be at most 15 characters, got "{"x" * 16}"'],
    ),
    (
        "ifname slash",
        {"interfaceName": "a/b"},
        ['config[0].interfaceName: must not contain "/", got "a/b"'],
    ),
    (
        "ifname number",
        {"interfaceName": 1},
        ['config[0].interfaceName: must be a string like "net1", got 1'],
    ),
    ("mtu low", {"mtu": 20}, ["config[0].mtu: must be between 68 and 65535, got 20"]),
    ("mtu string", {"mtu": "9000"}, ['config[0].mtu: must be an integer, got "9000"']),
    (
        "mac format",
        {"mac": "02:00:00:00:00"},
        ['config[0].mac: must be a MAC address like 02:00:00:00:00:01, got "02:00:00:00:00"'],
    ),
    (
        "mac multicast",
        {"mac": "01:00:5e:00:00:01"},
        [
            'config[0].mac: must be a unicast MAC address (first octet even), got "01:00:5e:00:00:01"'  # noqa: E501
        ],
    ),
    ("mac zero", {"mac": "00:00:00:00:00:00"}, ["config[0].mac: must not be all zeros"]),
    (
        "addresses not a list",
        {"addresses": "10.1.0.5/24"},
        ['config[0].addresses: must be a list, got "10.1.0.5/24"'],
    ),
    (
        "address without prefix",
        {"addresses": ["10.1.0.5"]},
        ['config[0].addresses[0]: must be an address/prefix like 10.1.0.5/24, got "10.1.0.5"'],
    ),
    (
        "address garbage",
        {"addresses": ["10.1.0.300/24"]},
        ['config[0].addresses[0]: is not a valid address/prefix, got "10.1.0.300/24"'],
    ),
    (
        "address twice",
        {"addresses": ["10.1.0.5/24", "10.1.0.5/24"]},
        ["config[0].addresses[1]: 10.1.0.5/24 is listed twice"],
    ),
    (
        "route unknown field",
        {"routes": [{"destination": "0.0.0.0/0", "via": "x"}]},
        ["config[0].routes[0].via: unknown field"],
    ),
    (
        "route family",
        {"routes": [{"destination": "::/0", "gateway": "10.0.0.1"}]},
        ["config[0].routes[0].gateway: 10.0.0.1 is IPv4 but destination ::/0 is IPv6"],
    ),
    (
        "route twice",
        {"routes": [{"destination": "::/0"}, {"destination": "::/0"}]},
        ["config[0].routes[1].destination: ::/0 is listed twice"],
    ),
    (
        "ifname eth0",
        {"interfaceName": "eth0"},
        [
            'config[0].interfaceName: must not be "lo" or "eth0" (the pod\'s own interfaces), got "eth0"'  # noqa: E501
        ],
    ),
    (
        "ifname lo",
        {"interfaceName": "lo"},
        [
            'config[0].interfaceName: must not be "lo" or "eth0" (the pod\'s own interfaces), got "lo"'  # noqa: E501
        ],
    ),
    (
        "ifname percent",
        {"interfaceName": "net%d"},
        ['config[0].interfaceName: must not contain "%", got "net%d"'],
    ),
    (
        "ifname NUL",
        {"interfaceName": "a\0b"},
        ['config[0].interfaceName: must not contain NUL, got "a\\u0000b"'],
    ),
    (
        "scoped address",
        {"addresses": ["fe80::1%eth0/64"]},
        ['config[0].addresses[0]: must not have a zone index ("%..."), got "fe80::1%eth0/64"'],
    ),
    (
        "scoped route gateway",
        {"routes": [{"destination": "::/0", "gateway": "fe80::1%eth0"}]},
        ['config[0].routes[0].gateway: must not have a zone index ("%..."), got "fe80::1%eth0"'],
    ),
    (
        "too many addresses",
        {"addresses": [f"10.9.0.{i}/24" for i in range(1, fields.MAX_ADDRESSES + 2)]},
        ["config[0].addresses: must have at most 16 items"],
    ),
    (
        "too many routes",
        {"routes": [{"destination": f"10.{i}.0.0/16"} for i in range(fields.MAX_ROUTES + 1)]},
        ["config[0].routes: must have at most 32 items"],
    ),
    (
        "small mtu with ipv6 address",
        {"mtu": 1000, "addresses": ["10.9.0.5/24", "fd00::5/64"]},
        ["config[0].mtu: must be at least 1280 for IPv6 address fd00::5/64, got 1000"],
    ),
    (
        "small mtu with ipv6 route",
        {"mtu": 1279, "routes": [{"destination": "fd00::/8"}]},
        ["config[0].mtu: must be at least 1280 for IPv6 route fd00::/8, got 1279"],
    ),
]


@pytest.mark.parametrize(("case", "document", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_claim_config(case: str, document: Any, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        merge(document)
    assert info.value.errors == expected
    assert str(info.value) == SUBJECT + "; ".join(expected)


POOL_BAD: list[tuple[str, Any, list[str]]] = [
    (
        "address outside pool",
        {"addresses": ["10.2.0.5/24"]},
        ["config[0].addresses[0]: 10.2.0.5/24 is outside subnet 10.1.0.0/24 of the PodNetwork"],
    ),
    (
        "address other family",
        {"addresses": ["fd00::5/64"]},
        ["config[0].addresses[0]: fd00::5/64 is outside subnet 10.1.0.0/24 of the PodNetwork"],
    ),
    (
        "gateway outside pool",
        {"routes": [{"destination": "0.0.0.0/0", "gateway": "10.9.0.1"}]},
        [
            "config[0].routes[0].gateway: 10.9.0.1 is outside subnet 10.1.0.0/24 "
            "(add onlink: true if it is reachable on the link anyway)"
        ],
    ),
    (
        "other prefix length",
        {"addresses": ["10.1.0.5/16"]},
        [
            "config[0].addresses[0]: 10.1.0.5/16 must have the prefix length /24 of subnet 10.1.0.0/24 of the PodNetwork, got /16"  # noqa: E501
        ],
    ),
    (
        "network address",
        {"addresses": ["10.1.0.0/24"]},
        ["config[0].addresses[0]: 10.1.0.0/24 is the network address of 10.1.0.0/24"],
    ),
    (
        "broadcast address",
        {"addresses": ["10.1.0.255/24"]},
        ["config[0].addresses[0]: 10.1.0.255/24 is the broadcast address of 10.1.0.0/24"],
    ),
    (
        "gateway",
        {"addresses": ["10.1.0.1/24"]},
        ["config[0].addresses[0]: 10.1.0.1/24 is the gateway (ipam.gateway) of the PodNetwork"],
    ),
    (
        "excluded",
        {"addresses": ["10.1.0.7/24", "10.1.0.70/24"]},
        [
            "config[0].addresses[1]: 10.1.0.70/24 is excluded by ipam.exclude[1] (10.1.0.64/28) of the PodNetwork"  # noqa: E501
        ],
    ),
    (
        "route via the broadcast address",
        {"routes": [{"destination": "0.0.0.0/0", "gateway": "10.1.0.255"}]},
        ["config[0].routes[0].gateway: 10.1.0.255 is the broadcast address of 10.1.0.0/24"],
    ),
]


@pytest.mark.parametrize(("case", "document", "expected"), POOL_BAD, ids=[b[0] for b in POOL_BAD])
def test_bad_claim_config_against_pool(case: str, document: Any, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        merge(document, net=FULL_POOL_NET)
    assert info.value.errors == expected


def test_static_addresses_the_pool_can_reserve() -> None:
    eff = merge({"addresses": ["10.1.0.2/24", "10.1.0.254/24", "10.1.0.80/24"]}, net=FULL_POOL_NET)
    assert len(eff.addresses) == 3


V6_POOL_NET = parameters.parse(
    {"interfaces": {"names": ["eth*"]}, "ipam": {"type": "pool", "subnet": "fd00::/64"}}
)
SMALL_MTU_NET = parameters.parse({"interfaces": {"names": ["eth*"]}, "mtu": 1000})


def test_a_claim_may_not_lower_the_mtu_of_an_ipv6_pool() -> None:
    with pytest.raises(ConfigError) as info:
        merge({"mtu": 1200}, net=V6_POOL_NET)
    assert info.value.errors == [
        "config[0].mtu: must be at least 1280 for IPv6 subnet fd00::/64, got 1200"
    ]


def test_ipv6_added_by_a_claim_to_a_network_with_a_small_mtu_points_at_the_claim() -> None:
    with pytest.raises(ConfigError) as info:
        merge(
            {"routes": [{"destination": "10.0.0.0/8"}, {"destination": "fd00::/8"}]},
            net=SMALL_MTU_NET,
        )
    assert info.value.errors == [
        "config[0].routes[1]: IPv6 needs an MTU of at least 1280, but the PodNetwork's mtu is 1000"
    ]
    assert merge({"addresses": ["10.9.0.5/24"]}, net=SMALL_MTU_NET).mtu == 1000
    assert merge({"mtu": 1280, "addresses": ["fd00::5/64"]}, net=SMALL_MTU_NET).mtu == 1280


def _longest_v6(i: int) -> str:
    return f"fd00:ffff:ffff:ffff:ffff:ffff:255.255.{i}.255"  # 45 characters: IPv6's longest form


def test_claim_config_at_every_bound_fits_the_apiservers_opaque_config_limit() -> None:
    biggest = {
        "interfaceName": "x" * 15,
        "addresses": [_longest_v6(i) + "/128" for i in range(fields.MAX_ADDRESSES)],
        "mac": "02:00:00:00:00:01",
        "mtu": 65535,
        "routes": [
            {"destination": _longest_v6(i) + "/128", "gateway": _longest_v6(255)}
            for i in range(fields.MAX_ROUTES)
        ],
    }
    assert len(merge(biggest).routes) == fields.MAX_ROUTES
    assert len(json.dumps(biggest).encode()) <= 10 * 1024


def test_tables_are_big_enough() -> None:
    assert len(BAD) + len(POOL_BAD) >= 15


def test_every_bad_entry_is_reported_with_its_own_index() -> None:
    with pytest.raises(ConfigError) as info:
        merge({"mtu": 1}, {"mac": "x"})
    assert info.value.errors == [
        "config[0].mtu: must be between 68 and 65535, got 1",
        'config[1].mac: must be a MAC address like 02:00:00:00:00:01, got "x"',
    ]


def test_class_config_errors_say_class() -> None:
    with pytest.raises(ConfigError) as info:
        claimconfig.effective_config(
            NONE_NET, [OpaqueConfig({"mtu": 1}, 3)], [], claim="ns/c", request="r"
        )
    assert (
        str(info.value)
        == "claim ns/c request r: class config[3].mtu: must be between 68 and 65535, got 1"
    )


def test_network_defaults_without_configs() -> None:
    eff = merge()
    assert (eff.interface_name, eff.mtu, eff.mac, eff.addresses) == ("net0", 1500, None, ())
    assert [str(r.destination) for r in eff.routes] == ["10.0.0.0/8"]
    assert eff.mode == "host-device"


def test_precedence_network_then_class_then_claim() -> None:
    eff = claimconfig.effective_config(
        NONE_NET,
        [OpaqueConfig({"mtu": 9000, "interfaceName": "cls0", "mac": "02:00:00:00:00:aa"}, 0)],
        [OpaqueConfig({"mtu": 1400}, 1)],
        claim="default/web",
        request="nic",
    )
    assert eff.mtu == 1400  # claim wins over class
    assert eff.interface_name == "cls0"  # class wins over network
    assert eff.mac == "02:00:00:00:00:aa"


def test_later_claim_entry_wins_and_lists_replace() -> None:
    eff = merge(
        {"routes": [{"destination": "192.168.0.0/16"}], "addresses": ["10.9.0.1/24"]},
        {"addresses": ["10.9.0.2/24"]},
    )
    assert eff.addresses == (ipaddress.ip_interface("10.9.0.2/24"),)
    assert [str(r.destination) for r in eff.routes] == ["192.168.0.0/16"]


def test_mac_is_normalised() -> None:
    assert merge({"mac": "02:AB:CD:00:00:01"}).mac == "02:ab:cd:00:00:01"


def test_request_scoping() -> None:
    configs = [
        OpaqueConfig({"mtu": 1000}, 0, ("other",)),
        OpaqueConfig({"interfaceName": "fast0"}, 1, ("nic",)),
        OpaqueConfig({"mac": "02:00:00:00:00:01"}, 2, ()),
    ]
    eff = claimconfig.effective_config(NONE_NET, [], configs, claim="d/c", request="nic/fast")
    assert eff.mtu == 1500  # scoped to another request: ignored
    assert eff.interface_name == "fast0"  # scoped to the parent request: applies to subrequests
    assert eff.mac == "02:00:00:00:00:01"  # unscoped: applies everywhere


def test_bad_config_of_another_request_does_not_fail_this_one() -> None:
    configs = [OpaqueConfig({"mtu": 1}, 0, ("other",))]
    assert (
        claimconfig.effective_config(NONE_NET, [], configs, claim="d/c", request="nic").mtu == 1500
    )


def test_split_allocation_configs() -> None:
    cls, claim = claimconfig.split_allocation_configs(
        [
            {
                "source": "FromClass",
                "opaque": {"driver": "multinet.dev", "parameters": {"mtu": 9000}},
            },
            {"source": "FromClaim", "opaque": {"driver": "gpu.example.com", "parameters": {}}},
            {
                "source": "FromClaim",
                "requests": ["nic"],
                "opaque": {"driver": "multinet.dev", "parameters": {"mtu": 1400}},
            },
        ]
    )
    assert cls == [OpaqueConfig({"mtu": 9000}, 0, ())]
    assert claim == [OpaqueConfig({"mtu": 1400}, 2, ("nic",))]
