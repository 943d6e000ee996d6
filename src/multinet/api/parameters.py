"""``spec.parameters`` of a PodNetwork whose provider is ``multinet.dev``.

Which host interfaces form the network (``interfaces.names``: exact names and globs), how a pod gets
one (``mode``), the default name inside the pod, MTU, IPAM and routes. ``parse`` validates a raw
document and raises ``ConfigError`` listing *every* problem as ``parameters.<path>: <rule>``; field
rules come from the model, cross-field rules (addresses inside the subnet, families agree, ranges
ordered, the pool has an address to hand out, IPv6 gets an MTU of at least 1280) from
``cross_check`` which runs once every field is individually valid.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from multinet.api import fields, problems
from multinet.api.fields import (
    Address,
    AddressOrNetwork,
    IPAddress,
    IPNetwork,
    Mtu,
    NamePattern,
    Network,
    PodIfName,
    StrictModel,
)

PREFIX = "parameters"

Mode = Literal["host-device", "macvlan"]


class Interfaces(StrictModel):
    """Host interfaces that belong to the network."""

    names: Annotated[list[NamePattern], Field(min_length=1, max_length=fields.MAX_INTERFACE_NAMES)]


class Ipam(StrictModel):
    """``none``: the NIC's own addresses travel with it. ``pool``: addresses from ``subnet``."""

    type: Literal["none", "pool"] = "none"
    subnet: Network | None = None
    range_start: Address | None = None
    range_end: Address | None = None
    exclude: Annotated[list[AddressOrNetwork], Field(max_length=fields.MAX_EXCLUDE)] = []
    gateway: Address | None = None


class Route(StrictModel):
    destination: Network
    gateway: Address | None = None


class NetworkParameters(StrictModel):
    interfaces: Interfaces
    mode: Mode = "host-device"
    interface_name: PodIfName | None = None
    mtu: Mtu | None = None
    ipam: Ipam = Ipam()
    routes: Annotated[list[Route], Field(max_length=fields.MAX_ROUTES)] = []


def _family(version: int) -> str:
    return f"IPv{version}"


def _inside(path: str, value: IPAddress | IPNetwork, subnet: IPNetwork) -> str | None:
    """None when ``value`` lies in ``subnet``, else the problem."""
    if value.version != subnet.version:
        return (
            f"{path}: {value} is {_family(value.version)} "
            f"but subnet {subnet} is {_family(subnet.version)}"
        )
    inside = (
        value.subnet_of(subnet)  # type: ignore[arg-type]
        if isinstance(value, IPNetwork)
        else value in subnet
    )
    return None if inside else f"{path}: {value} is outside subnet {subnet}"


_MULTICAST: dict[int, IPNetwork] = {
    4: ipaddress.IPv4Network("224.0.0.0/4"),
    6: ipaddress.IPv6Network("ff00::/8"),
}
_LOOPBACK: dict[int, IPNetwork] = {
    4: ipaddress.IPv4Network("127.0.0.0/8"),
    6: ipaddress.IPv6Network("::1/128"),
}


def host_range(subnet: IPNetwork) -> tuple[int, int]:
    """First and last address of ``subnet`` an interface may have, as integers.

    IPv4 leaves out the network and broadcast addresses (not in /31 and /32, RFC 3021), IPv6 the
    all-zeros subnet-router anycast address (not in /128): the rule ``multinet.ipam`` hands
    addresses out by, so what is valid here is what the pool can serve.
    """
    lo, hi = int(subnet.network_address), int(subnet.broadcast_address)
    if subnet.version == 4 and subnet.prefixlen < 31:
        return lo + 1, hi - 1
    if subnet.version == 6 and subnet.prefixlen < 128:
        return lo + 1, hi
    return lo, hi


def not_a_host(address: IPAddress, subnet: IPNetwork) -> str | None:
    """Why ``address``, inside ``subnet``, cannot be an interface's or a gateway's; else None."""
    lo, hi = host_range(subnet)
    if int(address) < lo:
        return f"is the network address of {subnet}"
    if int(address) > hi:
        return f"is the broadcast address of {subnet}"
    return None


def usable_count(ipam: Ipam, subnet: IPNetwork) -> int:
    """How many addresses the pool can hand out: its host range within rangeStart..rangeEnd,
    minus the exclude blocks and the gateway (fields already checked to lie in ``subnet``)."""
    lo, hi = host_range(subnet)
    if ipam.range_start is not None:
        lo = max(lo, int(ipam.range_start))
    if ipam.range_end is not None:
        hi = min(hi, int(ipam.range_end))
    taken = [(int(b.network_address), int(b.broadcast_address)) for b in ipam.exclude]
    if ipam.gateway is not None:
        taken.append((int(ipam.gateway), int(ipam.gateway)))
    count = max(0, hi - lo + 1)
    covered = lo - 1  # every address up to here is already subtracted (or outside the range)
    for start, end in sorted(taken):
        first, last = max(start, covered + 1), min(end, hi)
        if first <= last:
            count -= last - first + 1
            covered = last
    return count


def _check_subnet(subnet: IPNetwork, path: str) -> str | None:
    if subnet.prefixlen == 0:
        return f"{path}: must not be /0 (every {_family(subnet.version)} address), got {subnet}"
    for kind, special in (("multicast", _MULTICAST), ("loopback", _LOOPBACK)):
        block = special[subnet.version]
        if subnet.overlaps(block):
            return f"{path}: {subnet} overlaps the {kind} range {block}"
    return None


def check_ipam(ipam: Ipam, prefix: str = "ipam") -> list[str]:
    out: list[str] = []
    optional = {
        "rangeStart": ipam.range_start,
        "rangeEnd": ipam.range_end,
        "gateway": ipam.gateway,
    }
    if ipam.type == "none":
        given = {"subnet": ipam.subnet, **optional, "exclude": ipam.exclude or None}
        out += [
            f"{prefix}.{key}: only allowed when {prefix}.type is pool"
            for key, value in given.items()
            if value is not None
        ]
        return out
    subnet = ipam.subnet
    if subnet is None:
        return [f"{prefix}.subnet: is required when {prefix}.type is pool"]
    if msg := _check_subnet(subnet, f"{prefix}.subnet"):
        out.append(msg)
    for key, value in optional.items():
        if value is not None and (msg := _inside(f"{prefix}.{key}", value, subnet)):
            out.append(msg)
    gw = ipam.gateway
    inside = gw is not None and gw.version == subnet.version and gw in subnet  # else: told above
    if gw is not None and inside and (why := not_a_host(gw, subnet)):
        out.append(f"{prefix}.gateway: {gw} {why}")
    for i, block in enumerate(ipam.exclude):
        if msg := _inside(f"{prefix}.exclude[{i}]", block, subnet):
            out.append(msg)
    start, end = ipam.range_start, ipam.range_end
    if start and end and start.version == end.version and start > end:  # type: ignore[operator]
        out.append(f"{prefix}.rangeStart: {start} is after rangeEnd {end}")
    if not out and usable_count(ipam, subnet) == 0:
        out.append(
            f"{prefix}: leaves no address to hand out: subnet {subnet} without its network "
            "(and broadcast) address, limited to rangeStart..rangeEnd, minus exclude and gateway"
        )
    return out


def check_routes(
    routes: list[Route], subnet: IPNetwork | None, prefix: str = "routes"
) -> list[str]:
    out: list[str] = []
    seen: set[IPNetwork] = set()
    for i, route in enumerate(routes):
        path = f"{prefix}[{i}]"
        if route.destination in seen:
            out.append(f"{path}.destination: {route.destination} is listed twice")
        seen.add(route.destination)
        gw = route.gateway
        if gw is None:
            continue
        if gw.version != route.destination.version:
            out.append(
                f"{path}.gateway: {gw} is {_family(gw.version)} but destination "
                f"{route.destination} is {_family(route.destination.version)}"
            )
        elif subnet is not None and (msg := _inside(f"{path}.gateway", gw, subnet)):
            out.append(msg)
        elif subnet is not None and (why := not_a_host(gw, subnet)):
            out.append(f"{path}.gateway: {gw} {why}")
    return out


def cross_check(params: NetworkParameters) -> list[str]:
    """Rules spanning several fields; paths relative to ``parameters``."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(params.interfaces.names):
        if name in seen:
            out.append(f"interfaces.names[{i}]: {problems.show(name)} is listed twice")
        seen.add(name)
    out += check_ipam(params.ipam)
    subnet = params.ipam.subnet if params.ipam.type == "pool" else None
    out += check_routes(params.routes, subnet)
    if params.mtu is not None and params.mtu < fields.IPV6_MIN_MTU:
        # IPv6 refuses to run on a link below 1280 (RFC 8200): the kernel drops the interface's
        # IPv6 addresses and routes, so the pod would come up without them.
        ipv6 = [f"subnet {subnet}"] if subnet is not None and subnet.version == 6 else []
        ipv6 += [f"route {r.destination}" for r in params.routes if r.destination.version == 6]
        if ipv6:
            out.append(
                f"mtu: must be at least {fields.IPV6_MIN_MTU} for IPv6 {ipv6[0]}, got {params.mtu}"
            )
    return out


def parse(doc: Any, *, prefix: str = PREFIX) -> NetworkParameters:
    """Validate a raw ``spec.parameters`` document; ``ConfigError`` lists every problem."""
    if doc is None:
        problems.fail([f"{prefix}: is required (at least interfaces.names)"])
    try:
        params = NetworkParameters.model_validate(doc)
    except ValidationError as exc:
        problems.fail(problems.messages(exc, prefix))
    if errors := cross_check(params):
        problems.fail([f"{prefix}.{e}" for e in errors])
    return params
