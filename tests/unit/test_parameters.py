"""PodNetwork ``spec.parameters`` of provider multinet.dev: every rule, with the exact messages.

Cases: good documents (defaults filled, globs, v4/v6 pools, routes); a table of bad documents,
each with every message the user sees; the error lists all problems at once.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinet import ipam
from multinet.api import fields, parameters
from multinet.errors import ConfigError


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"interfaces": {"names": ["eth1"]}}
    base.update(over)
    return base


def pool(**over: Any) -> dict[str, Any]:
    ipam: dict[str, Any] = {"type": "pool", "subnet": "10.1.0.0/24"}
    ipam.update(over)
    return doc(ipam=ipam)


def test_minimal_document_gets_defaults() -> None:
    p = parameters.parse(doc())
    assert p.interfaces.names == ["eth1"]
    assert p.mode == "host-device"
    assert p.interface_name is None
    assert p.mtu is None
    assert p.ipam.type == "none"
    assert p.routes == []


def test_full_document() -> None:
    p = parameters.parse(
        {
            "interfaces": {"names": ["eth1", "ens*", "enp[0-3]s0"]},
            "mode": "macvlan",
            "interfaceName": "net1",
            "mtu": 9000,
            "ipam": {
                "type": "pool",
                "subnet": "10.1.0.0/24",
                "rangeStart": "10.1.0.10",
                "rangeEnd": "10.1.0.200",
                "exclude": ["10.1.0.50", "10.1.0.64/28"],
                "gateway": "10.1.0.1",
            },
            "routes": [
                {"destination": "192.168.0.0/16", "gateway": "10.1.0.1"},
                {"destination": "172.16.0.0/12"},
            ],
        }
    )
    assert p.mode == "macvlan"
    assert p.ipam.subnet == ipaddress.ip_network("10.1.0.0/24")
    assert p.ipam.exclude[0] == ipaddress.ip_network("10.1.0.50/32")
    assert p.routes[0].gateway == ipaddress.ip_address("10.1.0.1")
    # Serialises back to the document's own spelling.
    assert p.model_dump(by_alias=True, mode="json")["ipam"]["rangeStart"] == "10.1.0.10"


def test_ipv6_pool() -> None:
    p = parameters.parse(
        doc(mtu=1500, ipam={"type": "pool", "subnet": "fd00:1::/64", "gateway": "fd00:1::1"})
    )
    assert p.ipam.subnet is not None and p.ipam.subnet.version == 6


@pytest.mark.parametrize("name", ["a", "eth1", "x" * 15, "net-1_a.b", "é1", "lo0", "eth00"])
def test_good_interface_names(name: str) -> None:
    assert parameters.parse(doc(interfaceName=name)).interface_name == name


def test_the_pods_own_names_may_still_select_host_interfaces() -> None:
    assert parameters.parse(doc(interfaces={"names": ["eth0", "lo"]})).interfaces.names == [
        "eth0",
        "lo",
    ]


@pytest.mark.parametrize(
    ("subnet", "extra"),
    [
        ("10.1.0.0/31", {}),  # RFC 3021: both addresses usable
        ("10.1.0.9/32", {}),
        ("fd00::1/128", {}),
        ("10.1.0.0/30", {"gateway": "10.1.0.1"}),  # 10.1.0.2 is left
        ("10.1.0.0/24", {"rangeStart": "10.1.0.0", "rangeEnd": "10.1.0.1"}),  # 10.1.0.1 left
        ("fd00::/64", {"gateway": "fd00::1", "exclude": ["fd00::/65"]}),
        ("fe80::/64", {"gateway": "fe80::1"}),  # link-local is a legitimate pool
    ],
)
def test_small_and_special_pools_that_still_hand_out_an_address(
    subnet: str, extra: dict[str, Any]
) -> None:
    assert parameters.parse(pool(subnet=subnet, **extra)).ipam.subnet is not None


def test_lists_at_their_bounds() -> None:
    p = parameters.parse(
        {
            "interfaces": {"names": [f"eth{i}" for i in range(fields.MAX_INTERFACE_NAMES)]},
            "routes": [{"destination": f"10.{i}.0.0/16"} for i in range(fields.MAX_ROUTES)],
            "ipam": {
                "type": "pool",
                "subnet": "10.200.0.0/16",
                "exclude": [f"10.200.{i}.0/24" for i in range(fields.MAX_EXCLUDE)],
            },
        }
    )
    assert len(p.routes) == fields.MAX_ROUTES


def _longest_v6(i: int) -> str:
    return f"fd00:ffff:ffff:ffff:ffff:ffff:255.255.{i}.255"  # 45 characters: IPv6's longest form


def test_parameters_at_every_bound_fit_the_apiservers_opaque_config_limit() -> None:
    biggest = {
        "interfaces": {"names": [f"{i:02d}" + "*" * 62 for i in range(fields.MAX_INTERFACE_NAMES)]},
        "mode": "host-device",
        "interfaceName": "x" * 15,
        "mtu": 65535,
        "ipam": {
            "type": "pool",
            "subnet": "fd00::/16",
            "rangeStart": _longest_v6(0),
            "rangeEnd": _longest_v6(1),
            "exclude": [_longest_v6(i) + "/128" for i in range(2, 2 + fields.MAX_EXCLUDE)],
            "gateway": _longest_v6(250),
        },
        "routes": [
            {"destination": _longest_v6(i) + "/128", "gateway": _longest_v6(250)}
            for i in range(fields.MAX_ROUTES)
        ],
    }
    parameters.parse(biggest)
    assert len(json.dumps(biggest).encode()) <= 10 * 1024


@pytest.mark.parametrize("mtu", [68, 1500, 65535])
def test_good_mtu(mtu: int) -> None:
    assert parameters.parse(doc(mtu=mtu)).mtu == mtu


BAD: list[tuple[str, Any, list[str]]] = [
    ("missing", None, ["parameters: is required (at least interfaces.names)"]),
    ("not an object", ["eth1"], ['parameters: must be an object, got ["eth1"]']),
    ("no interfaces", {}, ["parameters.interfaces: is required"]),
    (
        "empty names",
        doc(interfaces={"names": []}),
        ["parameters.interfaces.names: must have at least 1 item"],
    ),
    (
        "names not a list",
        doc(interfaces={"names": "eth1"}),
        ['parameters.interfaces.names: must be a list, got "eth1"'],
    ),
    (
        "name not a string",
        doc(interfaces={"names": [3]}),
        ['parameters.interfaces.names[0]: must be a string like "eth1" or "ens*", got 3'],
    ),
    (
        "name too long",
        doc(interfaces={"names": ["a" * 16]}),
        [f'parameters.interfaces.names[0]: must be at most 15 characters, got "{"a" * 16}"'],
    ),
    (
        "unclosed bracket",
        doc(interfaces={"names": ["ens["]}),
        ['parameters.interfaces.names[0]: has an unclosed "[", got "ens["'],
    ),
    (
        "pattern with space",
        doc(interfaces={"names": ["en s*"]}),
        [
            'parameters.interfaces.names[0]: a pattern must not contain whitespace, "/" or ":", got "en s*"'  # noqa: E501
        ],
    ),
    (
        "duplicate name",
        doc(interfaces={"names": ["eth1", "eth2", "eth1"]}),
        ['parameters.interfaces.names[2]: "eth1" is listed twice'],
    ),
    ("unknown top-level", doc(vlan=5), ["parameters.vlan: unknown field"]),
    (
        "unknown nested",
        doc(interfaces={"names": ["eth1"], "pci": "x"}),
        ["parameters.interfaces.pci: unknown field"],
    ),
    (
        "bad mode",
        doc(mode="bridge"),
        ["parameters.mode: must be 'host-device', 'macvlan' or 'cni', got \"bridge\""],
    ),
    (
        "ifname slash",
        doc(interfaceName="net/1"),
        ['parameters.interfaceName: must not contain "/", got "net/1"'],
    ),
    (
        "ifname colon",
        doc(interfaceName="net:1"),
        ['parameters.interfaceName: must not contain ":", got "net:1"'],
    ),
    (
        "ifname space",
        doc(interfaceName="net 1"),
        ['parameters.interfaceName: must not contain whitespace, got "net 1"'],
    ),
    (
        "ifname empty",
        doc(interfaceName=""),
        ['parameters.interfaceName: must be 1-15 characters, got ""'],
    ),
    (
        "ifname dot",
        doc(interfaceName="."),
        ['parameters.interfaceName: must not be "." or "..", got "."'],
    ),
    (
        "ifname dotdot",
        doc(interfaceName=".."),
        ['parameters.interfaceName: must not be "." or "..", got ".."'],
    ),
    (
        "ifname 16",
        doc(interfaceName="abcdefghijklmnop"),
        ['parameters.interfaceName: must be at most 15 characters, got "abcdefghijklmnop"'],
    ),
    ("mtu low", doc(mtu=67), ["parameters.mtu: must be between 68 and 65535, got 67"]),
    ("mtu high", doc(mtu=65536), ["parameters.mtu: must be between 68 and 65535, got 65536"]),
    ("mtu string", doc(mtu="1500"), ['parameters.mtu: must be an integer, got "1500"']),
    ("mtu bool", doc(mtu=True), ["parameters.mtu: must be an integer, got true"]),
    (
        "ipam type",
        doc(ipam={"type": "dhcp"}),
        ["parameters.ipam.type: must be 'none' or 'pool', got \"dhcp\""],
    ),
    (
        "pool without subnet",
        doc(ipam={"type": "pool"}),
        ["parameters.ipam.subnet: is required when ipam.type is pool (or subnets)"],
    ),
    (
        "subnet with none",
        doc(ipam={"subnet": "10.1.0.0/24"}),
        ["parameters.ipam.subnet: only allowed when ipam.type is pool"],
    ),
    (
        "subnet not cidr",
        pool(subnet="10.1.0.0"),
        ['parameters.ipam.subnet: must be a CIDR like 10.1.0.0/24, got "10.1.0.0"'],
    ),
    (
        "subnet garbage",
        pool(subnet="10.1.0.0/33"),
        ['parameters.ipam.subnet: is not a valid CIDR, got "10.1.0.0/33"'],
    ),
    (
        "subnet host bits",
        pool(subnet="10.1.0.1/24"),
        [
            'parameters.ipam.subnet: has host bits set, got "10.1.0.1/24" (the network is 10.1.0.0/24)'  # noqa: E501
        ],
    ),
    (
        "gateway outside",
        pool(subnet="10.2.0.0/24", gateway="10.1.0.1"),
        ["parameters.ipam.gateway: 10.1.0.1 is outside subnet 10.2.0.0/24"],
    ),
    (
        "gateway family",
        pool(gateway="fd00::1"),
        ["parameters.ipam.gateway: fd00::1 is IPv6 but subnet 10.1.0.0/24 is IPv4"],
    ),
    (
        "gateway not an address",
        pool(gateway="10.1.0.1/24"),
        ['parameters.ipam.gateway: is not an IP address, got "10.1.0.1/24"'],
    ),
    (
        "range outside",
        pool(rangeStart="10.1.1.1"),
        ["parameters.ipam.rangeStart: 10.1.1.1 is outside subnet 10.1.0.0/24"],
    ),
    (
        "range reversed",
        pool(rangeStart="10.1.0.200", rangeEnd="10.1.0.10"),
        ["parameters.ipam.rangeStart: 10.1.0.200 is after rangeEnd 10.1.0.10"],
    ),
    (
        "exclude outside",
        pool(exclude=["10.1.0.5", "10.9.0.0/28"]),
        ["parameters.ipam.exclude[1]: 10.9.0.0/28 is outside subnet 10.1.0.0/24"],
    ),
    (
        "exclude garbage",
        pool(exclude=["ten"]),
        ['parameters.ipam.exclude[0]: is not an IP address or CIDR, got "ten"'],
    ),
    (
        "route without destination",
        doc(routes=[{"gateway": "10.1.0.1"}]),
        ["parameters.routes[0].destination: is required"],
    ),
    (
        "route destination host bits",
        doc(routes=[{"destination": "10.0.0.1/8"}]),
        [
            'parameters.routes[0].destination: has host bits set, got "10.0.0.1/8" (the network is 10.0.0.0/8)'  # noqa: E501
        ],
    ),
    (
        "route gateway family",
        doc(routes=[{"destination": "0.0.0.0/0", "gateway": "fd00::1"}]),
        ["parameters.routes[0].gateway: fd00::1 is IPv6 but destination 0.0.0.0/0 is IPv4"],
    ),
    (
        "route gateway outside pool",
        {**pool(), "routes": [{"destination": "0.0.0.0/0", "gateway": "10.3.0.1"}]},
        [
            "parameters.routes[0].gateway: 10.3.0.1 is outside subnet 10.1.0.0/24 "
            "(add onlink: true if it is reachable on the link anyway)"
        ],
    ),
    (
        "route twice",
        doc(routes=[{"destination": "10.0.0.0/8"}, {"destination": "10.0.0.0/8"}]),
        ["parameters.routes[1].destination: 10.0.0.0/8 is listed twice"],
    ),
    (
        "ipv6 small mtu",
        doc(mtu=1000, ipam={"type": "pool", "subnet": "fd00::/64"}),
        ["parameters.mtu: must be at least 1280 for IPv6 subnet fd00::/64, got 1000"],
    ),
    (
        "ifname percent",
        doc(interfaceName="net%d"),
        ['parameters.interfaceName: must not contain "%", got "net%d"'],
    ),
    (
        "ifname NUL",
        doc(interfaceName="net\0"),
        ['parameters.interfaceName: must not contain NUL, got "net\\u0000"'],
    ),
    (
        "ifname lone surrogate",
        doc(interfaceName="net\ud800"),
        ['parameters.interfaceName: must be valid Unicode text, got "net\\ud800"'],
    ),
    (
        "ifname eth0",
        doc(interfaceName="eth0"),
        [
            'parameters.interfaceName: must not be "lo" or "eth0" (the pod\'s own interfaces), got "eth0"'  # noqa: E501
        ],
    ),
    (
        "ifname lo",
        doc(interfaceName="lo"),
        [
            'parameters.interfaceName: must not be "lo" or "eth0" (the pod\'s own interfaces), got "lo"'  # noqa: E501
        ],
    ),
    (
        "host name percent",
        doc(interfaces={"names": ["eth%d"]}),
        ['parameters.interfaces.names[0]: must not contain "%", got "eth%d"'],
    ),
    (
        "pattern percent",
        doc(interfaces={"names": ["eth%*"]}),
        ['parameters.interfaces.names[0]: a pattern must not contain "%", got "eth%*"'],
    ),
    (
        "pattern NUL",
        doc(interfaces={"names": ["eth*\0"]}),
        ['parameters.interfaces.names[0]: a pattern must not contain NUL, got "eth*\\u0000"'],
    ),
    (
        "too many names",
        doc(interfaces={"names": [f"eth{i}" for i in range(fields.MAX_INTERFACE_NAMES + 1)]}),
        ["parameters.interfaces.names: must have at most 32 items"],
    ),
    (
        "too many routes",
        doc(routes=[{"destination": f"10.{i}.0.0/16"} for i in range(fields.MAX_ROUTES + 1)]),
        ["parameters.routes: must have at most 32 items"],
    ),
    (
        "too many excludes",
        pool(exclude=[f"10.1.0.{i}" for i in range(fields.MAX_EXCLUDE + 1)]),
        ["parameters.ipam.exclude: must have at most 32 items"],
    ),
    (
        "scoped subnet",
        pool(subnet="fe80::%eth0/64"),
        ['parameters.ipam.subnet: must not have a zone index ("%..."), got "fe80::%eth0/64"'],
    ),
    (
        "scoped gateway",
        pool(subnet="fe80::/64", gateway="fe80::1%eth0"),
        ['parameters.ipam.gateway: must not have a zone index ("%..."), got "fe80::1%eth0"'],
    ),
    (
        "scoped range",
        pool(subnet="fe80::/64", rangeStart="fe80::10%1"),
        ['parameters.ipam.rangeStart: must not have a zone index ("%..."), got "fe80::10%1"'],
    ),
    (
        "scoped exclude",
        pool(subnet="fe80::/64", exclude=["fe80::5%eth0"]),
        ['parameters.ipam.exclude[0]: must not have a zone index ("%..."), got "fe80::5%eth0"'],
    ),
    (
        "scoped route",
        doc(routes=[{"destination": "fe80::%eth0/64", "gateway": "fe80::1%eth0"}]),
        [
            'parameters.routes[0].destination: must not have a zone index ("%..."), got "fe80::%eth0/64"',  # noqa: E501
            'parameters.routes[0].gateway: must not have a zone index ("%..."), got "fe80::1%eth0"',
        ],
    ),
    (
        "subnet /0",
        pool(subnet="0.0.0.0/0"),
        ["parameters.ipam.subnet: must not be /0 (every IPv4 address), got 0.0.0.0/0"],
    ),
    (
        "subnet ::/0",
        pool(subnet="::/0"),
        ["parameters.ipam.subnet: must not be /0 (every IPv6 address), got ::/0"],
    ),
    (
        "subnet multicast",
        pool(subnet="239.1.0.0/24"),
        ["parameters.ipam.subnet: 239.1.0.0/24 overlaps the multicast range 224.0.0.0/4"],
    ),
    (
        "subnet holding multicast",
        pool(subnet="192.0.0.0/2"),
        ["parameters.ipam.subnet: 192.0.0.0/2 overlaps the multicast range 224.0.0.0/4"],
    ),
    (
        "subnet multicast v6",
        pool(subnet="ff02::/64"),
        ["parameters.ipam.subnet: ff02::/64 overlaps the multicast range ff00::/8"],
    ),
    (
        "subnet loopback",
        pool(subnet="127.0.0.0/24"),
        ["parameters.ipam.subnet: 127.0.0.0/24 overlaps the loopback range 127.0.0.0/8"],
    ),
    (
        "subnet loopback v6",
        pool(subnet="::/127"),
        ["parameters.ipam.subnet: ::/127 overlaps the loopback range ::1/128"],
    ),
    (
        "no usable address",
        pool(subnet="10.1.0.0/30", gateway="10.1.0.1", exclude=["10.1.0.2"]),
        [
            "parameters.ipam: leaves no address to hand out: subnet 10.1.0.0/30 without its network (and broadcast) address, limited to rangeStart..rangeEnd, minus exclude and gateway"  # noqa: E501
        ],
    ),
    (
        "range holds only the gateway",
        pool(rangeStart="10.1.0.1", rangeEnd="10.1.0.1", gateway="10.1.0.1"),
        [
            "parameters.ipam: leaves no address to hand out: subnet 10.1.0.0/24 without its network (and broadcast) address, limited to rangeStart..rangeEnd, minus exclude and gateway"  # noqa: E501
        ],
    ),
    (
        "gateway network address",
        pool(gateway="10.1.0.0"),
        ["parameters.ipam.gateway: 10.1.0.0 is the network address of 10.1.0.0/24"],
    ),
    (
        "gateway broadcast address",
        pool(gateway="10.1.0.255"),
        ["parameters.ipam.gateway: 10.1.0.255 is the broadcast address of 10.1.0.0/24"],
    ),
    (
        "gateway v6 subnet-router anycast",
        pool(subnet="fd00::/64", gateway="fd00::"),
        ["parameters.ipam.gateway: fd00:: is the network address of fd00::/64"],
    ),
    (
        "route gateway broadcast",
        {**pool(), "routes": [{"destination": "0.0.0.0/0", "gateway": "10.1.0.255"}]},
        ["parameters.routes[0].gateway: 10.1.0.255 is the broadcast address of 10.1.0.0/24"],
    ),
    (
        "ipv6 route small mtu",
        doc(mtu=1000, routes=[{"destination": "10.0.0.0/8"}, {"destination": "fd00::/8"}]),
        ["parameters.mtu: must be at least 1280 for IPv6 route fd00::/8, got 1000"],
    ),
    (
        "several field errors at once",
        doc(mode="x", mtu=1, interfaceName="a b"),
        [
            "parameters.mode: must be 'host-device', 'macvlan' or 'cni', got \"x\"",
            'parameters.interfaceName: must not contain whitespace, got "a b"',
            "parameters.mtu: must be between 68 and 65535, got 1",
        ],
    ),
    (
        "several cross-field errors at once",
        pool(gateway="10.9.0.1", rangeStart="10.9.0.2", rangeEnd="10.9.0.1"),
        [
            "parameters.ipam.rangeStart: 10.9.0.2 is outside subnet 10.1.0.0/24",
            "parameters.ipam.rangeEnd: 10.9.0.1 is outside subnet 10.1.0.0/24",
            "parameters.ipam.gateway: 10.9.0.1 is outside subnet 10.1.0.0/24",
            "parameters.ipam.rangeStart: 10.9.0.2 is after rangeEnd 10.9.0.1",
        ],
    ),
]


@pytest.mark.parametrize(("case", "document", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_parameters(case: str, document: Any, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parameters.parse(document)
    assert info.value.errors == expected
    assert str(info.value) == "; ".join(expected)


def test_table_is_big_enough() -> None:
    assert len(BAD) >= 20


def test_ipv4_routes_allow_a_small_mtu() -> None:
    assert parameters.parse(doc(mtu=576, routes=[{"destination": "10.0.0.0/8"}])).mtu == 576


_octet = st.integers(min_value=0, max_value=255)


@given(
    prefix=st.integers(min_value=26, max_value=32),
    start=st.none() | _octet,
    end=st.none() | _octet,
    excluded=st.lists(st.tuples(_octet, st.integers(min_value=28, max_value=32)), max_size=4),
    gateway=st.none() | _octet,
)
def test_a_pool_is_refused_as_empty_exactly_when_the_ipam_has_nothing_to_offer(
    prefix: int,
    start: int | None,
    end: int | None,
    excluded: list[tuple[int, int]],
    gateway: int | None,
) -> None:
    """The validation's count and the IPAM's walk follow the same rules (network, broadcast,
    /31 and /32, range, exclude, gateway): no pool passes that could never serve a claim."""
    subnet = ipaddress.ip_network(f"10.1.0.0/{prefix}")
    hosts = [a for a in ipaddress.ip_network("10.1.0.0/24") if a in subnet]
    document: dict[str, Any] = {"type": "pool", "subnet": str(subnet)}
    if start is not None:
        document["rangeStart"] = f"10.1.0.{start}"
    if end is not None:
        document["rangeEnd"] = f"10.1.0.{end}"
    if gateway is not None:
        document["gateway"] = f"10.1.0.{gateway}"
    document["exclude"] = [
        str(ipaddress.ip_network(f"10.1.0.{o}/{max(p, prefix)}", strict=False)) for o, p in excluded
    ]
    model = parameters.Ipam.model_validate(document)
    errors = parameters.check_ipam(model)
    empty = "ipam: leaves no address to hand out"
    if any(not e.startswith(empty) for e in errors):
        return  # some other field is wrong (outside the subnet, reversed range, ...)
    offered = list(ipam.candidates(ipam.pool_from(model), "k"))
    assert bool(errors) == (not offered), (errors, offered, hosts)
