"""``spec.parameters`` of a PodNetwork whose provider is ``multinet.dev``.

Which host interfaces form the network (``interfaces.names``: exact names and globs), how a pod gets
one (``mode``), the default name inside the pod, MTU, IPAM and routes. ``parse`` validates a raw
document and raises ``ConfigError`` listing *every* problem as ``parameters.<path>: <rule>``; field
rules come from the model, cross-field rules (addresses inside the subnet, families agree, ranges
ordered) from ``cross_check`` which runs once every field is individually valid.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from multinet.api import fields, problems
from multinet.api.fields import (
    Address,
    AddressOrNetwork,
    IfName,
    IPAddress,
    IPNetwork,
    Mtu,
    NamePattern,
    Network,
    StrictModel,
)

PREFIX = "parameters"

Mode = Literal["host-device", "macvlan"]


class Interfaces(StrictModel):
    """Host interfaces that belong to the network."""

    names: Annotated[list[NamePattern], Field(min_length=1)]


class Ipam(StrictModel):
    """``none``: the NIC's own addresses travel with it. ``pool``: addresses from ``subnet``."""

    type: Literal["none", "pool"] = "none"
    subnet: Network | None = None
    range_start: Address | None = None
    range_end: Address | None = None
    exclude: list[AddressOrNetwork] = []
    gateway: Address | None = None


class Route(StrictModel):
    destination: Network
    gateway: Address | None = None


class NetworkParameters(StrictModel):
    interfaces: Interfaces
    mode: Mode = "host-device"
    interface_name: IfName | None = None
    mtu: Mtu | None = None
    ipam: Ipam = Ipam()
    routes: list[Route] = []


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
    for key, value in optional.items():
        if value is not None and (msg := _inside(f"{prefix}.{key}", value, subnet)):
            out.append(msg)
    for i, block in enumerate(ipam.exclude):
        if msg := _inside(f"{prefix}.exclude[{i}]", block, subnet):
            out.append(msg)
    start, end = ipam.range_start, ipam.range_end
    if start and end and start.version == end.version and start > end:  # type: ignore[operator]
        out.append(f"{prefix}.rangeStart: {start} is after rangeEnd {end}")
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
    if (
        subnet is not None
        and subnet.version == 6
        and params.mtu is not None
        and params.mtu < fields.IPV6_MIN_MTU
    ):
        out.append(
            f"mtu: must be at least {fields.IPV6_MIN_MTU} for IPv6 subnet {subnet}, "
            f"got {params.mtu}"
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
