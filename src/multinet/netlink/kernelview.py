"""Decoding rtnetlink messages into the host's state: pure, no sockets, no threads.

`KernelView` is the inventory thread's view of one network namespace: it applies link, address,
route and nexthop messages one by one (each carries the object's full state) and makes an
immutable `HostSnapshot` of them on request. Links and addresses arrive as pyroute2 messages
(`apply`); routes and nexthop objects are decoded here by hand from the raw body (`apply_raw`),
because pyroute2 has no nexthop message class and drops RTA_NH_ID. The sockets, the thread and
the dump/notification protocol are in `multinet.netlink.inventory`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from multinet.devices.model import Hardware, HostSnapshot, Link
from multinet.netlink import codec

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
BY_HAND = frozenset({RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEXTHOP, RTM_DELNEXTHOP})
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_ARPHRD_LOOPBACK = 772
_RT_TABLE_MAIN, _RTN_UNICAST = 254, 1
_RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_MULTIPATH, _RTA_TABLE, _RTA_NH_ID = 4, 5, 6, 9, 15, 30
_NHA_ID, _NHA_GROUP, _NHA_OIF = 1, 2, 5
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type,
#                                       flags
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
NHMSG = struct.Struct("=BBBBI")  # family, scope, protocol, reserved, flags
_NH_GRP = struct.Struct("=IBBH")  # nexthop_grp: id, weight, weight_high, reserved
_U32, _I32 = struct.Struct("=I"), struct.Struct("=i")


@dataclass(frozen=True)
class _Addr:
    index: int
    family: int
    cidr: str
    scope: int


def _link(msg: Any) -> Link:
    """Link facts from one RTM_NEWLINK message (addresses and hardware are joined later)."""
    index = int(msg["index"])
    peer = msg.get("IFLA_LINK")
    master = msg.get("IFLA_MASTER")
    return Link(
        index=index,
        ifname=str(msg.get("IFLA_IFNAME") or f"if{index}"),
        kind=str(msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""),
        mac=str(msg.get("IFLA_ADDRESS") or ""),
        perm_mac=str(msg.get("IFLA_PERM_ADDRESS") or ""),
        mtu=int(msg.get("IFLA_MTU") or 0),
        up=bool(msg["flags"] & _IFF_UP),
        oper_state=str(msg.get("IFLA_OPERSTATE") or "unknown").lower(),
        loopback=bool(msg["flags"] & _IFF_LOOPBACK) or msg["ifi_type"] == _ARPHRD_LOOPBACK,
        master=int(master) if master else None,
        peer=int(peer) if peer and peer != index else None,
        peer_netns=msg.get("IFLA_LINK_NETNSID") is not None,
    )


def _addr(msg: Any) -> _Addr | None:
    family = int(msg["family"])
    if family == socket.AF_INET:
        ip = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
    elif family == socket.AF_INET6:
        ip = msg.get("IFA_ADDRESS")
    else:
        return None
    if not ip:
        return None
    return _Addr(int(msg["index"]), family, f"{ip}/{msg['prefixlen']}", int(msg["scope"]))


@dataclass(frozen=True)
class Route:
    """A default route: the interfaces it names itself, or the nexthop object it goes through."""

    oifs: tuple[int, ...] = ()
    nhid: int | None = None


@dataclass(frozen=True)
class Nexthop:
    """A nexthop object: a device (blackholes have none) or a group of other nexthop ids."""

    oif: int | None = None
    group: tuple[int, ...] = ()


def default_route(body: bytes) -> tuple[tuple[Any, ...], Route] | None:
    """(key, route) of a main-table default route from an RTM_NEWROUTE/DELROUTE body (after the
    netlink header); None for any other route."""
    if len(body) < RTMSG.size:
        return None
    family, dst_len, _src, tos, table, _proto, _scope, rtype, _flags = RTMSG.unpack_from(body)
    attrs = codec.tlvs(body, RTMSG.size)
    if _RTA_TABLE in attrs:
        table = _U32.unpack(attrs[_RTA_TABLE][:4])[0]
    if dst_len != 0 or table != _RT_TABLE_MAIN or rtype != _RTN_UNICAST:
        return None
    priority = _U32.unpack(attrs[_RTA_PRIORITY][:4])[0] if _RTA_PRIORITY in attrs else None
    if _RTA_NH_ID in attrs:
        # The nexthop object is the truth: in compat mode the kernel adds its oif/gateway here
        # too, but keying on them would leave a stale entry when the object is replaced.
        nhid = _U32.unpack(attrs[_RTA_NH_ID][:4])[0]
        return (family, tos, priority, "nhid", nhid), Route(nhid=nhid)
    oifs: list[int] = []
    if _RTA_OIF in attrs:
        oifs.append(_I32.unpack(attrs[_RTA_OIF][:4])[0])
    hops = attrs.get(_RTA_MULTIPATH, b"")
    off = 0
    while off + _RTNH.size <= len(hops):
        length, _hflags, _weight, ifindex = _RTNH.unpack_from(hops, off)
        if length < _RTNH.size:
            break
        oifs.append(ifindex)
        off += (length + 3) & ~3
    found = tuple(i for i in oifs if i > 0)
    return (family, tos, priority, attrs.get(_RTA_GATEWAY), found), Route(oifs=found)


def nexthop(body: bytes) -> tuple[int, Nexthop] | None:
    """(id, object) from an RTM_NEWNEXTHOP/DELNEXTHOP body (after the netlink header)."""
    if len(body) < NHMSG.size:
        return None
    attrs = codec.tlvs(body, NHMSG.size)
    if _NHA_ID not in attrs:
        return None
    oif = _I32.unpack(attrs[_NHA_OIF][:4])[0] if _NHA_OIF in attrs else None
    raw = attrs.get(_NHA_GROUP, b"")
    group = tuple(
        _NH_GRP.unpack_from(raw, off)[0]
        for off in range(0, len(raw) - _NH_GRP.size + 1, _NH_GRP.size)
    )
    return _U32.unpack(attrs[_NHA_ID][:4])[0], Nexthop(oif=oif or None, group=group)


def route_devices(route: Route, nexthops: dict[int, Nexthop]) -> frozenset[int]:
    """The interfaces ``route`` leaves through, following its nexthop object and group members
    (an id that is gone, or a loop a racy view might show, simply adds nothing)."""
    if route.nhid is None:
        return frozenset(route.oifs)
    out: set[int] = set()
    todo, seen = [route.nhid], set()
    while todo:
        nhid = todo.pop()
        nh = nexthops.get(nhid)
        if nhid in seen or nh is None:
            continue
        seen.add(nhid)
        if nh.oif is not None:
            out.add(nh.oif)
        todo.extend(nh.group)
    return frozenset(out)


class KernelView:
    """The reader thread's view of one netns; only that thread touches it."""

    def __init__(self, *, hardware: Callable[[str], Hardware | None] | None = None) -> None:
        #: Reads a link's hardware facts by name (sysfs); None where sysfs shows another netns.
        self.hardware = hardware
        self.links: dict[int, Link] = {}
        self.addrs: dict[tuple[int, int, str], _Addr] = {}
        self.routes: dict[tuple[Any, ...], Route] = {}
        self.nexthops: dict[int, Nexthop] = {}

    def clear(self) -> None:
        self.links.clear()
        self.addrs.clear()
        self.routes.clear()
        self.nexthops.clear()

    def apply(self, msg: Any) -> None:
        kind = msg["header"]["type"]
        if kind == RTM_NEWLINK:
            link = _link(msg)
            self.links[link.index] = link
        elif kind == RTM_DELLINK:
            index = int(msg["index"])
            self.links.pop(index, None)
            # Moved to another netns or deleted: its addresses, routes and nexthop objects went
            # with it (the kernel flushes those without a notification).
            self.addrs = {k: a for k, a in self.addrs.items() if a.index != index}
            gone = {i for i, nh in self.nexthops.items() if nh.oif == index}
            self.nexthops = {i: nh for i, nh in self.nexthops.items() if i not in gone}
            self.routes = {
                k: r for k, r in self.routes.items() if index not in r.oifs and r.nhid not in gone
            }
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            addr = _addr(msg)
            if addr is not None:
                key = (addr.index, addr.family, addr.cidr)
                if kind == RTM_NEWADDR:
                    self.addrs[key] = addr
                else:
                    self.addrs.pop(key, None)

    def apply_raw(self, kind: int, body: bytes) -> None:
        """Apply one route or nexthop message (``body``: after the netlink header)."""
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            route = default_route(body)
            if route is not None:
                if kind == RTM_NEWROUTE:
                    self.routes[route[0]] = route[1]
                else:
                    self.routes.pop(route[0], None)
        elif kind in (RTM_NEWNEXTHOP, RTM_DELNEXTHOP):
            found = nexthop(body)
            if found is None:
                return
            nhid, nh = found
            if kind == RTM_NEWNEXTHOP:
                self.nexthops[nhid] = nh
            else:
                self.nexthops.pop(nhid, None)
                # The kernel deletes the routes through it, without a notification.
                self.routes = {k: r for k, r in self.routes.items() if r.nhid != nhid}

    def snapshot(self) -> HostSnapshot:
        v4: dict[int, list[_Addr]] = {}
        v6: dict[int, list[_Addr]] = {}
        for a in self.addrs.values():
            if a.family == socket.AF_INET:
                v4.setdefault(a.index, []).append(a)
            elif a.scope == 0:  # IPv6: global scope only, link-local is no identity
                v6.setdefault(a.index, []).append(a)
        links = []
        for link in self.links.values():
            ipv4 = sorted(v4.get(link.index, ()), key=lambda a: a.scope != 0)  # global first
            hw = self.hardware(link.ifname) if self.hardware is not None and not link.kind else None
            links.append(
                replace(
                    link,
                    ipv4=tuple(a.cidr for a in ipv4),
                    ipv6=tuple(a.cidr for a in v6.get(link.index, ())),
                    hw=hw,
                )
            )
        holders = frozenset(
            i for route in self.routes.values() for i in route_devices(route, self.nexthops)
        )
        return HostSnapshot(links=tuple(links), default_route_ifindexes=holders)
