"""Pure IPAM decisions for `ipam.type: pool`: which addresses may be handed out, in which order,
what the reservation object for an address is called, whose it is (`Holder.owns`) and whether it
is orphaned (`still_held`). No I/O; the apiserver-backed reservation lives in `multinet.kube.ipam`.

Usable addresses: inside `rangeStart`..`rangeEnd` (default: the whole subnet), minus `exclude`
blocks and the gateway. IPv4 skips the network and broadcast addresses (except in /31 and /32,
RFC 3021); IPv6 skips the all-zeros subnet-router anycast address.

Uniqueness: an address is unique across the whole cluster, whatever PodNetwork it comes from
(one reservation object per address, see `reservation_name`); overlapping pools share it.

Order: the walk starts at a point derived from a key (the claim UID + request), wraps around
and visits every usable address once. Different claims start far apart, so concurrent prepares on
many nodes rarely try the same address; the same claim always starts at the same point, so a
retried prepare finds its own earlier reservation first.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from multinet.api import names
from multinet.api.fields import IPAddress, IPNetwork
from multinet.api.parameters import Ipam, Subnet
from multinet.plans import ClaimRef


@dataclass(frozen=True)
class Pool:
    subnet: IPNetwork
    first: int  # lowest usable address, as an integer
    last: int  # highest usable address, as an integer
    exclude: tuple[tuple[int, int], ...]  # (first, last) integer ranges, sorted, merged

    @property
    def size(self) -> int:
        """Addresses between first and last inclusive (exclusions not subtracted)."""
        return max(0, self.last - self.first + 1)

    def usable(self, address: IPAddress) -> bool:
        value = int(address)
        return (
            address.version == self.subnet.version
            and self.first <= value <= self.last
            and self.excluded_until(value) is None
        )

    def excluded_until(self, value: int) -> int | None:
        """The last address of the excluded range holding `value`, or None."""
        for lo, hi in self.exclude:
            if lo <= value <= hi:
                return hi
            if lo > value:
                break
        return None

    def prefixed(self, address: IPAddress) -> str:
        """`10.1.0.5` -> `10.1.0.5/28`: the address as it goes on an interface."""
        return f"{address}/{self.subnet.prefixlen}"


def pool_from(ipam: Ipam) -> Pool:
    """The (first) pool of a validated `ipam` block (type pool)."""
    pools = ipam.pools()
    if not pools:
        raise ValueError("ipam.type must be pool with a subnet")
    return pool_of(pools[0])


def pool_of(spec: Subnet) -> Pool:
    """The pool one validated subnet entry describes."""
    subnet = spec.subnet
    lo, hi = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.version == 4 and subnet.prefixlen < 31:
        lo, hi = lo + 1, hi - 1
    elif subnet.version == 6 and subnet.prefixlen < 128:
        lo += 1
    if spec.range_start is not None:
        lo = max(lo, int(spec.range_start))
    if spec.range_end is not None:
        hi = min(hi, int(spec.range_end))
    blocks = [(int(b.network_address), int(b.broadcast_address)) for b in spec.exclude]
    if spec.gateway is not None:
        blocks.append((int(spec.gateway), int(spec.gateway)))
    return Pool(subnet, lo, hi, _merge(blocks))


def _merge(blocks: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(blocks):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def start_offset(pool: Pool, key: str) -> int:
    """Where the walk for `key` begins, 0 <= offset < size (0 for an empty pool)."""
    if pool.size == 0:
        return 0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:16], "big") % pool.size


def candidates(pool: Pool, key: str) -> Iterator[IPAddress]:
    """Every usable address exactly once, starting at `start_offset(pool, key)` and wrapping.
    Excluded blocks are jumped over, not walked, so huge IPv6 exclusions cost nothing."""
    if pool.size == 0:
        return
    start = pool.first + start_offset(pool, key)
    for lo, hi in ((start, pool.last), (pool.first, start - 1)):
        value = lo
        while value <= hi:
            end = pool.excluded_until(value)
            if end is not None:
                value = end + 1
                continue
            yield _from_int(pool, value)
            value += 1


def _from_int(pool: Pool, value: int) -> IPAddress:
    # ip_address(int) would guess the family from the magnitude; the pool decides instead.
    if pool.subnet.version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)


def _address_label(address: IPAddress) -> str:
    if address.version == 4:
        return str(address).replace(".", "-")
    return address.exploded.replace(":", "-")


def reservation_name(address: IPAddress) -> str:
    """The reservation object's name: the address with dashes, e.g. `10-1-0-5` or
    `fd00-0000-...-0005`. The name holds the address alone, not the network: every pool of the
    cluster draws from one address space, so two PodNetworks whose subnets overlap can never
    hand out the same address (the apiserver refuses the second object of that name)."""
    return _address_label(address)


def parse_address(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@dataclass(frozen=True)
class Holder:
    """Who an address is for."""

    claim: ClaimRef
    request: str
    device: str
    node: str
    pod_name: str | None = None
    pod_uid: str | None = None

    def owns(self, spec: Mapping[str, Any]) -> bool:
        claim = spec.get("claim") or {}
        return (
            claim.get("uid") == self.claim.uid
            and spec.get("request") == self.request
            and spec.get("device") == self.device
            and spec.get("node") == self.node
        )

    @property
    def where(self) -> str:
        return f"claim {self.claim} request {self.request}"


def still_held(claim: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> bool:
    """Does the claim (a ResourceClaim document, None when gone) still hold this reservation's
    device on its node? When not, the reservation is orphaned and may be deleted."""
    if claim is None:
        return False
    if (claim.get("metadata") or {}).get("uid") != (spec.get("claim") or {}).get("uid"):
        return False
    allocation = (claim.get("status") or {}).get("allocation")
    if not allocation:
        return False
    if not spec.get("device"):
        return True
    return any(
        r.get("driver") == names.DRIVER
        and r.get("pool") == spec.get("node")
        and r.get("device") == spec.get("device")
        for r in (allocation.get("devices") or {}).get("results") or ()
    )
