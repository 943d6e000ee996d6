"""PodNetwork ``spec.parameters`` of provider multinet.dev: every rule, with the exact messages.

Cases: good documents (defaults filled, globs, v4/v6 pools, routes); a table of bad documents,
each with every message the user sees; the error lists all problems at once.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from multinet.api import parameters
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


@pytest.mark.parametrize("name", ["a", "eth0", "x" * 15, "net-1_a.b", "é1"])
def test_good_interface_names(name: str) -> None:
    assert parameters.parse(doc(interfaceName=name)).interface_name == name


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
        ["parameters.mode: must be 'host-device' or 'macvlan', got \"bridge\""],
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
        ["parameters.ipam.subnet: is required when ipam.type is pool"],
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
        ["parameters.routes[0].gateway: 10.3.0.1 is outside subnet 10.1.0.0/24"],
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
        "several field errors at once",
        doc(mode="x", mtu=1, interfaceName="a b"),
        [
            "parameters.mode: must be 'host-device' or 'macvlan', got \"x\"",
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
