"""Pure decisions for putting an interface's addresses and routes into a wanted state.

No I/O: given what the kernel shows now and what we want, say what to remove and what to add, in
the order to do it. Used when restoring a host interface (after the move back, after an agent
restart half-way through a restore, or when the interface is already home) so that running the
restore twice is harmless.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Sequence

from multinet.plans import HostAddress, HostRoute, Route

# The kernel's metric when none is given: IPv4 0, IPv6 1024 (`ip -6 route` shows "metric 1024").
_DEFAULT_METRIC = {4: 0, 6: 1024}


def address_changes(
    current: Sequence[HostAddress], wanted: Sequence[HostAddress]
) -> tuple[list[HostAddress], list[HostAddress]]:
    """(remove, add), each in the order to apply; both lists in the kernel's (`ip addr`) order.

    An address whose flags, label or scope differ counts as a different one. Nothing is left out
    here: the caller drops the addresses the kernel makes itself (see `hoststate.kernel_made`).

    Order matters, and differs by family. IPv4 lists addresses oldest first, and the first of a
    subnet is the primary (deleting it deletes its secondaries): when the current list is a prefix
    of the wanted one we only append, otherwise remove all (secondaries first) and add all in
    order. IPv6 lists the newest first: the current list must be a suffix of the wanted one, and
    what is missing is added last-listed first.
    """
    cur4, cur6 = _by_family(current)
    want4, want6 = _by_family(wanted)
    remove: list[HostAddress] = []
    add: list[HostAddress] = []
    if cur4 == want4[: len(cur4)]:
        add += want4[len(cur4) :]
    else:
        remove += reversed(cur4)
        add += want4
    missing = len(want6) - len(cur6)
    if missing >= 0 and want6[missing:] == cur6:
        add += reversed(want6[:missing])
    else:
        remove += cur6
        add += reversed(want6)
    return remove, add


def _by_family(addrs: Sequence[HostAddress]) -> tuple[list[HostAddress], list[HostAddress]]:
    v4: list[HostAddress] = []
    v6: list[HostAddress] = []
    for addr in addrs:
        iface = ipaddress.ip_interface(addr.cidr)
        canonical = addr.model_copy(update={"cidr": str(iface)})
        (v4 if iface.version == 4 else v6).append(canonical)
    return v4, v6


def route_key(route: Route) -> tuple[str, str | None, int]:
    """What makes two routes the same for our purposes: destination, gateway, metric."""
    dst = ipaddress.ip_network(route.destination, strict=False)
    metric = route.metric if route.metric is not None else _DEFAULT_METRIC[dst.version]
    gw = str(ipaddress.ip_address(route.gateway)) if route.gateway else None
    return str(dst), gw, metric


def route_changes(
    current: Sequence[HostRoute], wanted: Sequence[HostRoute]
) -> tuple[list[HostRoute], list[HostRoute]]:
    """(remove, add): routes through the interface that should not be there, then missing ones
    in the order to add them (see `restore_order`); routes compare by `host_route_key`."""
    want_keys = {host_route_key(r) for r in wanted}
    cur_keys = {host_route_key(r) for r in current}
    remove = [r for r in current if host_route_key(r) not in want_keys]
    add = [r for r in wanted if host_route_key(r) not in cur_keys]
    return remove, restore_order(add)


def host_route_key(route: HostRoute) -> Hashable:
    """Everything that makes a host route what it is, with the kernel's defaults filled in, so a
    route read back from the kernel equals the recorded one exactly when nothing differs."""
    dst = ipaddress.ip_network(route.destination, strict=False)
    metric = route.metric if route.metric is not None else _DEFAULT_METRIC[dst.version]
    default_scope = 0 if route.gateway or route.nexthops or route.type != 1 else 253
    hops = tuple((_ip_or_none(h.gateway), h.ifindex, h.weight, h.onlink) for h in route.nexthops)
    # IPv6 routes always carry a preference; "medium" (0) is what one added without gets.
    pref = route.pref if route.pref is not None else (0 if dst.version == 6 else None)
    return (
        str(dst),
        route.table,
        route.type,
        route.tos,
        metric,
        _ip_or_none(route.gateway),
        route.protocol if route.protocol is not None else 3,  # RTPROT_BOOT, as `ip route add`
        _ip_or_none(route.source),
        route.scope if route.scope is not None else default_scope,
        route.onlink,
        pref,
        tuple(sorted(route.metrics)),
        hops,
    )


def restore_order(routes: Sequence[HostRoute]) -> list[HostRoute]:
    """Routes without a gateway first: a gateway must be reachable when its route is added, and
    the kernel lists routes by prefix (a default route before the link route reaching its
    gateway). Otherwise the recorded order is kept (`sorted` is stable)."""
    return sorted(routes, key=lambda r: bool(r.gateway or any(h.gateway for h in r.nexthops)))


def _ip_or_none(addr: str | None) -> str | None:
    return str(ipaddress.ip_address(addr)) if addr else None


def normalize_mac(mac: str) -> str:
    return mac.strip().lower()
