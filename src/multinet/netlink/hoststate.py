"""Read-only: how a host interface looks now, as the `HostState` a restore puts back.

Used while preparing a claim (slow work is allowed there): the plan records the interface's
name, index, MTU, MAC, link state, addresses and routes before anything moves. pyroute2's sync
API blocks (tens of ms under load), so `read_host_state` runs it in a worker thread.

What is recorded: every address except IPv6 link-local ones (the kernel regenerates those when the
link comes up), in kernel order, with the IPv4 broadcast where set; main-table unicast routes
through the interface that the kernel did not create itself (proto kernel routes reappear with
their address), with metric, protocol and preferred source so a restore is exact.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from multinet.errors import ClaimError
from multinet.plans import HostState, Route

_IFF_UP = 0x1
_RT_TABLE_MAIN = 254
_RTPROT_KERNEL = 2
_RTN_UNICAST = 1


class InterfaceNotFound(ClaimError):
    """The interface a device stands for is not on the host (gone, renamed, or in a pod)."""


async def read_host_state(ifname: str) -> HostState:
    return await asyncio.to_thread(read_host_state_sync, ifname)


def read_host_state_sync(ifname: str) -> HostState:
    """Blocking variant, for worker threads."""
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise InterfaceNotFound(f"interface {ifname} is not on the host")
            index = found[0]
            link = next(iter(ipr.get_links(index)))
            addrs = list(ipr.get_addr(index=index))
            routes = list(ipr.get_routes(table=_RT_TABLE_MAIN))
    except NetlinkError as exc:
        raise ClaimError(f"cannot read interface {ifname} from the host: {exc}") from exc
    addresses, broadcasts = _addresses(addrs, index)
    return HostState(
        ifname=link.get_attr("IFLA_IFNAME"),
        ifindex=index,
        mtu=link.get_attr("IFLA_MTU"),
        mac=str(link.get_attr("IFLA_ADDRESS") or "").lower(),
        up=bool(link["flags"] & _IFF_UP),
        addresses=tuple(addresses),
        routes=tuple(_routes(routes, index)),
        broadcasts=tuple(broadcasts),
    )


def _addresses(msgs: list[Any], index: int) -> tuple[list[str], list[tuple[str, str]]]:
    addresses: list[str] = []
    broadcasts: list[tuple[str, str]] = []
    for m in msgs:
        if m["index"] != index:
            continue
        local = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        cidr = str(ipaddress.ip_interface(f"{local}/{m['prefixlen']}"))
        if m["family"] == socket.AF_INET6 and ipaddress.ip_address(local).is_link_local:
            continue
        addresses.append(cidr)
        if brd := m.get_attr("IFA_BROADCAST"):
            broadcasts.append((cidr, brd))
    return addresses, broadcasts


def _routes(msgs: list[Any], index: int) -> list[Route]:
    out: list[Route] = []
    for m in msgs:
        table = m.get_attr("RTA_TABLE") or m["table"]
        if (
            m.get_attr("RTA_OIF") != index
            or table != _RT_TABLE_MAIN
            or m["proto"] == _RTPROT_KERNEL
            or m["type"] != _RTN_UNICAST
        ):
            continue
        default = "::" if m["family"] == socket.AF_INET6 else "0.0.0.0"
        dst = m.get_attr("RTA_DST") or default
        out.append(
            Route(
                destination=f"{dst}/{m['dst_len']}",
                gateway=m.get_attr("RTA_GATEWAY"),
                metric=m.get_attr("RTA_PRIORITY"),
                protocol=m["proto"],
                source=m.get_attr("RTA_PREFSRC"),
            )
        )
    return out
