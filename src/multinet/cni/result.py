"""A CNI result as the facts the claim status reports: the `Outcome`. Pure, no I/O.

Reads both result shapes we run: 0.3.x/0.4.0 (`ips[].version` present) and 1.x (no `version`);
the family is taken from the address itself either way. The pod's interface is the one named
CNI_IFNAME whose `sandbox` is the pod's netns (a chain also reports host-side interfaces: the
bridge, the veth peer); its addresses are the `ips` entries pointing at it (`interface` is an
index into `interfaces`) plus those pointing nowhere (IPAM-only results).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from multinet.api.problems import show
from multinet.cni.errors import CniError


@dataclass(frozen=True, slots=True)
class Route:
    destination: str  # CIDR
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class Dns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The pod's interface as the chain left it."""

    interface: str
    mac: str  # lower case; "" when the result names no such interface or no MAC
    ips: tuple[str, ...]  # CIDR form, in result order
    gateway4: str | None
    gateway6: str | None
    routes: tuple[Route, ...]
    dns: Dns


def parse_outcome(result: Any, *, ifname: str, netns: str) -> Outcome:
    """The Outcome of `result` (a chain's final result) for interface `ifname` in `netns`.

    Raises CniError when the result is not shaped as the spec says.
    """
    if not isinstance(result, Mapping):
        raise _bad("", f"must be an object, got {show(result)}")
    interfaces = _list(result, "interfaces")
    index = _pod_interface(interfaces, ifname, netns)
    mac = ""
    if index is not None:
        mac = str(interfaces[index].get("mac") or "").lower()
    ips, gateway4, gateway6 = _addresses(_list(result, "ips"), index)
    return Outcome(
        interface=ifname,
        mac=mac,
        ips=ips,
        gateway4=gateway4,
        gateway6=gateway6,
        routes=_routes(_list(result, "routes")),
        dns=_dns(result.get("dns")),
    )


def _bad(where: str, rule: str) -> CniError:
    return CniError(f"CNI result{' ' + where if where else ''}: {rule}")


def _list(result: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = result.get(key) or []
    if not isinstance(value, list):
        raise _bad(key, f"must be a list, got {show(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _bad(f"{key}[{i}]", f"must be an object, got {show(item)}")
    return value


def _pod_interface(interfaces: list[Mapping[str, Any]], ifname: str, netns: str) -> int | None:
    named = [i for i, it in enumerate(interfaces) if it.get("name") == ifname]
    for i in named:
        if interfaces[i].get("sandbox") == netns:
            return i
    # A plugin may report the sandbox under another spelling of the same path.
    for i in named:
        if interfaces[i].get("sandbox"):
            return i
    return None


def _addresses(
    ips: list[Mapping[str, Any]], index: int | None
) -> tuple[tuple[str, ...], str | None, str | None]:
    cidrs: list[str] = []
    gateways: dict[int, str] = {}
    for i, entry in enumerate(ips):
        points_at = entry.get("interface")
        if points_at is not None and (not isinstance(points_at, int) or points_at != index):
            continue
        address = _ip(entry.get("address"), f"ips[{i}].address", ipaddress.ip_interface)
        cidrs.append(address)
        if entry.get("gateway"):
            gateway = _ip(entry["gateway"], f"ips[{i}].gateway", ipaddress.ip_address)
            gateways.setdefault(ipaddress.ip_address(gateway).version, gateway)
    return tuple(cidrs), gateways.get(4), gateways.get(6)


def _ip(value: Any, where: str, parse: Callable[[Any], object]) -> str:
    try:
        return str(parse(value))
    except (TypeError, ValueError):
        raise _bad(where, f"must be an IP address, got {show(value)}") from None


def _routes(routes: list[Mapping[str, Any]]) -> tuple[Route, ...]:
    out = []
    for i, route in enumerate(routes):
        dst: Any = route.get("dst")
        try:
            destination = str(ipaddress.ip_network(dst, strict=False))
        except (TypeError, ValueError):
            raise _bad(f"routes[{i}].dst", f"must be a CIDR, got {show(dst)}") from None
        gateway = route.get("gw")
        if gateway:
            gateway = _ip(gateway, f"routes[{i}].gw", ipaddress.ip_address)
        out.append(Route(destination, gateway or None))
    return tuple(out)


def _dns(dns: Any) -> Dns:
    if not dns:
        return Dns()
    if not isinstance(dns, Mapping):
        raise _bad("dns", f"must be an object, got {show(dns)}")

    def strings(key: str) -> tuple[str, ...]:
        value = dns.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(f"dns.{key}", f"must be a list of strings, got {show(value)}")
        return tuple(value)

    domain = dns.get("domain") or ""
    if not isinstance(domain, str):
        raise _bad("dns.domain", f"must be a string, got {show(domain)}")
    return Dns(strings("nameservers"), domain, strings("search"), strings("options"))
