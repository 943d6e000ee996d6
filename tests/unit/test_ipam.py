"""IPAM decisions: which addresses a pool hands out, in which order, and reservation names.

Cases: IPv4 skips network and broadcast; /31 and /32 use every address; IPv6 skips only the
subnet-router anycast; rangeStart/rangeEnd bound the walk; exclude (addresses and blocks) and the
gateway are never offered; every usable address is visited exactly once from any start; different
keys start at different points, the same key at the same point; huge IPv6 pools stay lazy;
names are valid, unique per (network, address) and bounded in length.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinet import ipam
from multinet.api.parameters import Ipam


def _pool(**doc: Any) -> ipam.Pool:
    return ipam.pool_from(Ipam.model_validate({"type": "pool", **doc}))


def _all(pool: ipam.Pool, key: str = "k") -> list[str]:
    return [str(a) for a in ipam.candidates(pool, key)]


def test_ipv4_skips_network_and_broadcast() -> None:
    got = _all(_pool(subnet="10.1.0.0/29"))
    assert sorted(got, key=ipaddress.ip_address) == [f"10.1.0.{i}" for i in range(1, 7)]


@pytest.mark.parametrize(
    ("subnet", "expected"),
    [("10.1.0.0/31", ["10.1.0.0", "10.1.0.1"]), ("10.1.0.9/32", ["10.1.0.9"])],
)
def test_point_to_point_subnets_use_every_address(subnet: str, expected: list[str]) -> None:
    assert sorted(_all(_pool(subnet=subnet))) == expected


def test_ipv6_skips_only_the_subnet_router_anycast() -> None:
    got = sorted(ipaddress.ip_address(a) for a in _all(_pool(subnet="fd00::/125")))
    assert [str(a) for a in got] == [f"fd00::{i}" for i in range(1, 8)]


def test_range_exclude_and_gateway_bound_the_offer() -> None:
    pool = _pool(
        subnet="10.1.0.0/24",
        rangeStart="10.1.0.10",
        rangeEnd="10.1.0.20",
        exclude=["10.1.0.12", "10.1.0.16/30"],
        gateway="10.1.0.11",
    )
    got = sorted(_all(pool), key=ipaddress.ip_address)
    assert got == ["10.1.0.10", "10.1.0.13", "10.1.0.14", "10.1.0.15", "10.1.0.20"]
    assert pool.usable(ipaddress.ip_address("10.1.0.13"))
    assert not pool.usable(ipaddress.ip_address("10.1.0.17"))
    assert not pool.usable(ipaddress.ip_address("10.1.0.11"))
    assert not pool.usable(ipaddress.ip_address("10.1.0.21"))
    assert not pool.usable(ipaddress.ip_address("fd00::1"))
    assert pool.prefixed(ipaddress.ip_address("10.1.0.13")) == "10.1.0.13/24"


def test_fully_excluded_pool_offers_nothing() -> None:
    assert _all(_pool(subnet="10.1.0.0/30", exclude=["10.1.0.0/30"])) == []


@given(key=st.text(max_size=40), prefix=st.integers(min_value=24, max_value=30))
def test_every_usable_address_exactly_once_from_any_start(key: str, prefix: int) -> None:
    pool = _pool(subnet=f"10.9.0.0/{prefix}", exclude=["10.9.0.5"], gateway="10.9.0.1")
    got = _all(pool, key)
    assert len(got) == len(set(got))
    expected = {
        str(a)
        for a in ipaddress.ip_network(f"10.9.0.0/{prefix}").hosts()
        if str(a) not in ("10.9.0.5", "10.9.0.1")
    }
    assert set(got) == expected


def test_start_point_is_stable_per_key_and_spread_across_keys() -> None:
    pool = _pool(subnet="10.1.0.0/16")
    assert _first(pool, "claim-a/net") == _first(pool, "claim-a/net")
    starts = {ipam.start_offset(pool, f"uid-{i}/net") for i in range(200)}
    assert len(starts) > 190  # 200 keys into 65534 slots: collisions are rare


def _first(pool: ipam.Pool, key: str) -> str:
    return str(next(ipam.candidates(pool, key)))


def test_huge_ipv6_pool_is_lazy() -> None:
    pool = _pool(subnet="fd00:1::/64", exclude=["fd00:1::/65"])
    first = list(itertools.islice(ipam.candidates(pool, "x"), 3))
    assert len(first) == 3
    assert all(a in ipaddress.ip_network("fd00:1:0:0:8000::/65") for a in first)


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.1.0.5", "10-1-0-5"),
        ("fd00::5", "fd00-0000-0000-0000-0000-0000-0000-0005"),
    ],
)
def test_reservation_names(address: str, expected: str) -> None:
    name = ipam.reservation_name(ipaddress.ip_address(address))
    assert name == expected
    assert _NAME.match(name)


def test_one_address_is_one_reservation_whatever_the_network() -> None:
    """Two PodNetworks whose pools overlap contend for the same object, so the apiserver hands
    each address out once across the cluster (the name carries no network)."""
    a = ipam.pool_from(Ipam.model_validate({"type": "pool", "subnet": "10.1.0.0/24"}))
    b = ipam.pool_from(Ipam.model_validate({"type": "pool", "subnet": "10.1.0.128/25"}))
    shared = ipaddress.ip_address("10.1.0.200")
    assert a.usable(shared) and b.usable(shared)
    assert ipam.reservation_name(shared) == "10-1-0-200"


def test_pool_requires_pool_type() -> None:
    with pytest.raises(ValueError, match="pool"):
        ipam.pool_from(Ipam())
