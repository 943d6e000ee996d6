"""A lean, blocking rtnetlink client bound to one network namespace.

Why not pyroute2's `IPRoute`: in 0.9 every sync call runs an asyncio loop underneath and costs
~1 ms of Python per request here, and its message classes cost ~0.2 ms per message; on the attach
path that was several milliseconds on top of the kernel's work. This client sends hand-packed
messages (`codec.py`): one `send` per request or per batch, one `recv` loop for the acks.

Blocking by design: callers run it on a worker thread (see `executor.py`), never on the event loop.
Errors come out as `RtnlError` (an OSError with the kernel's errno and extended-ack text); the
attach/detach layer maps them to multinet errors.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from multinet.netlink import codec as c
from multinet.netlink.codec import (
    Address,
    DefaultRoute,
    Link,
    Neighbor,
    NextHop,
    RouteEntry,
    Rule,
)

__all__ = [
    "Address",
    "DefaultRoute",
    "Link",
    "Neighbor",
    "NextHop",
    "Request",
    "RouteEntry",
    "Rtnl",
    "RtnlError",
    "Rule",
]

T = TypeVar("T")

_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLM_F_REPLACE, _NLM_F_EXCL, _NLM_F_CREATE = 0x100, 0x200, 0x400
_NLM_F_CAPPED, _NLM_F_ACK_TLVS = 0x100, 0x200
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_SOL_NETLINK = 270
_NETLINK_CAP_ACK, _NETLINK_EXT_ACK, _NETLINK_GET_STRICT_CHK = 10, 11, 12
_NLMSGERR_ATTR_MSG = 1
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NEW = _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
_PUT = _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_REPLACE


class RtnlError(OSError):
    """A request the kernel refused; `op` says which, `str()` adds the kernel's own words."""

    def __init__(self, code: int, op: str, detail: str = "") -> None:
        self.op = op
        self.detail = detail
        text = os.strerror(code) + (f" ({detail})" if detail else "")
        super().__init__(code, f"{op}: {text}")


@dataclass(frozen=True, slots=True)
class Request:
    """One message (family header + attributes) with a label for errors ("add address ...")."""

    op: str
    type: int
    flags: int
    body: bytes


class Rtnl:
    """One NETLINK_ROUTE socket; the namespace it lives in is the one its creator was in."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
            sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
            sock.setsockopt(_SOL_NETLINK, _NETLINK_GET_STRICT_CHK, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __del__(self) -> None:
        # Worker threads' sockets live in thread-locals and go away with their thread.
        sock: socket.socket | None = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _wire(self, req: Request) -> tuple[int, bytes]:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        flags = req.flags | _NLM_F_REQUEST
        return self._seq, _HDR.pack(16 + len(req.body), req.type, flags, self._seq, 0) + req.body

    def batch(self, reqs: Sequence[Request]) -> list[RtnlError | None]:
        """Send all requests in one write; the kernel runs them in order and acks each one.

        A failed request does not stop the later ones, so callers undo on any error.
        """
        if not reqs:
            return []
        wire = [self._wire(r) for r in reqs]
        by_seq = {seq: i for i, (seq, _) in enumerate(wire)}
        self._sock.send(b"".join(data for _, data in wire))
        results: list[RtnlError | None] = [None] * len(reqs)
        pending = set(by_seq)
        while pending:
            for mtype, flags, seq, body in self._messages():
                if mtype != _NLMSG_ERROR or seq not in pending:
                    continue
                pending.discard(seq)
                code, detail = _parse_error(flags, body)
                if code:
                    i = by_seq[seq]
                    results[i] = RtnlError(code, reqs[i].op, detail)
        return results

    def do(self, req: Request) -> None:
        err = self.batch([req])[0]
        if err is not None:
            raise err

    def _get(self, req: Request, parse: Callable[[bytes], T]) -> T | None:
        """A single GET: the parsed answer, or None when the object does not exist."""
        seq, data = self._wire(req)
        self._sock.send(data)
        while True:
            for mtype, flags, rseq, body in self._messages():
                if rseq != seq:
                    continue
                if mtype == _NLMSG_ERROR:
                    code, detail = _parse_error(flags, body)
                    if code in (errno_mod.ENODEV, errno_mod.ENOENT):
                        return None
                    raise RtnlError(code or errno_mod.EIO, req.op, detail)
                return parse(body)

    def _dump(self, req: Request, parse: Callable[[bytes], T | None]) -> list[T]:
        """Every answer of a dump, parsed; those `parse` gives None for are left out."""
        seq, data = self._wire(req)
        self._sock.send(data)
        out: list[T] = []
        while True:
            for mtype, flags, rseq, body in self._messages():
                if rseq != seq:
                    continue
                if mtype == _NLMSG_DONE:
                    return out
                if mtype == _NLMSG_ERROR:
                    code, detail = _parse_error(flags, body)
                    raise RtnlError(code or errno_mod.EIO, req.op, detail)
                item = parse(body)
                if item is not None:
                    out.append(item)

    def _messages(self) -> list[tuple[int, int, int, bytes]]:
        buf = self._sock.recv(1 << 17)
        out = []
        off = 0
        while off + 16 <= len(buf):
            length, mtype, flags, seq, _pid = _HDR.unpack_from(buf, off)
            if length < 16:
                break
            out.append((mtype, flags, seq, buf[off + 16 : off + length]))
            off += (length + 3) & ~3
        return out

    # -- links -----------------------------------------------------------------------------

    def get_link(self, *, index: int = 0, name: str | None = None) -> Link | None:
        body = c.ifinfo(index) + (c.attr(c.IFLA_IFNAME, c.string(name)) if name else b"")
        # Without the counters (none of them is used): a smaller answer, built and read faster.
        body += _SKIP_STATS
        return self._get(Request(f"get link {name or index}", c.RTM_GETLINK, 0, body), c.parse_link)

    def links(self) -> list[Link]:
        req = Request("list links", c.RTM_GETLINK, _NLM_F_DUMP, c.ifinfo())
        return self._dump(req, c.parse_link)

    def set_link(
        self,
        index: int,
        *,
        netns_fd: int | None = None,
        new_index: int | None = None,
        name: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool | None = None,
        master: int | None = None,
        addr_gen_mode: int | None = None,
        op: str = "",
    ) -> Request:
        """One RTM_NEWLINK (setlink). The kernel applies the netns move (with the new name) first,
        then MAC and MTU, then the up/down flag: so one message can move, rename and resize.
        `new_index`: the index the link is to have in `netns_fd` (Linux 5.13 and later; EBUSY,
        and nothing done, when that namespace has it; older kernels ignore it). `master` 0
        releases the link from its bridge or bond."""
        flags = c.IFF_UP if up else 0
        body = c.ifinfo(index, flags=flags, change=c.IFF_UP if up is not None else 0)
        if netns_fd is not None:
            body += c.attr(c.IFLA_NET_NS_FD, c.u32(netns_fd))
        if new_index is not None:
            body += c.attr(c.IFLA_NEW_IFINDEX, c.i32(new_index))
        if name is not None:
            body += c.attr(c.IFLA_IFNAME, c.string(name))
        if mac is not None:
            body += c.attr(c.IFLA_ADDRESS, c.mac(mac))
        if mtu is not None:
            body += c.attr(c.IFLA_MTU, c.u32(mtu))
        if master is not None:
            body += c.attr(c.IFLA_MASTER, c.u32(master))
        if addr_gen_mode is not None:
            mode = c.attr(c.IFLA_INET6_ADDR_GEN_MODE, bytes([addr_gen_mode]))
            body += c.nested(c.IFLA_AF_SPEC, c.nested(socket.AF_INET6, mode))
        return Request(op or f"set link {index}", c.RTM_NEWLINK, _NLM_F_ACK, body)

    def new_macvlan(
        self,
        parent: int,
        *,
        name: str,
        netns_fd: int,
        mac: str | None,
        mtu: int | None,
        mode: str = "bridge",
    ) -> Request:
        """Create a macvlan child of `parent` directly inside another namespace; `mode` is
        bridge, private, vepa or passthru (the kernel refuses a second passthru child)."""
        body = c.ifinfo() + c.attr(c.IFLA_IFNAME, c.string(name))
        body += c.attr(c.IFLA_LINK, c.u32(parent)) + c.attr(c.IFLA_NET_NS_FD, c.u32(netns_fd))
        body += c.nested(
            c.IFLA_LINKINFO,
            c.attr(c.IFLA_INFO_KIND, c.string("macvlan")),
            c.nested(c.IFLA_INFO_DATA, c.attr(c.IFLA_MACVLAN_MODE, c.u32(c.MACVLAN_MODES[mode]))),
        )
        if mac is not None:
            body += c.attr(c.IFLA_ADDRESS, c.mac(mac))
        if mtu is not None:
            body += c.attr(c.IFLA_MTU, c.u32(mtu))
        return Request(f"create macvlan {name} on parent {parent}", c.RTM_NEWLINK, _NEW, body)

    def del_link(self, index: int, op: str = "") -> Request:
        return Request(op or f"delete link {index}", c.RTM_DELLINK, _NLM_F_ACK, c.ifinfo(index))

    # -- addresses -------------------------------------------------------------------------

    def addresses(self, index: int) -> list[Address]:
        """The link's addresses in kernel order (the order `ip addr` shows)."""
        req = Request("list addresses", c.RTM_GETADDR, _NLM_F_DUMP, c.ifaddr(0, 0, index))
        return [a for i, a in self._dump(req, c.parse_address) if i == index]

    def add_address(
        self, index: int, cidr: str, broadcast: str | None = None, *, nodad: bool = False
    ) -> Request:
        return Request(
            f"add address {cidr}", c.RTM_NEWADDR, _NEW, _addr(index, cidr, broadcast, nodad)
        )

    def put_address(self, index: int, address: Address) -> Request:
        """Add an address as `address` describes it: flags, label, scope and origin included."""
        body = _addr(index, address.cidr, address.broadcast, False, scope=address.scope)
        flags = address.flags & c.IFA_F_USER
        if flags:
            body = body[:2] + bytes([flags & 0xFF]) + body[3:]
            body += c.attr(c.IFA_FLAGS, c.u32(flags))
        if address.label:
            body += c.attr(c.IFA_LABEL, c.string(address.label))
        if address.proto:
            body += c.attr(c.IFA_PROTO, bytes([address.proto]))
        return Request(f"add address {address.cidr}", c.RTM_NEWADDR, _NEW, body)

    def del_address(self, index: int, cidr: str) -> Request:
        body = _addr(index, cidr, None, False)
        return Request(f"delete address {cidr}", c.RTM_DELADDR, _NLM_F_ACK, body)

    # -- routes ----------------------------------------------------------------------------

    def routes(self, index: int) -> list[RouteEntry]:
        """Routes through the link in every table, multipath routes with a path through it
        included, that the kernel did not make itself (for addresses, from router
        advertisements or redirects)."""
        out = []
        # One dump per family: an AF_UNSPEC dump with these filters returns IPv4 routes only.
        # Without RTA_TABLE the kernel dumps all tables; RTA_OIF matches any path of a route.
        for fam in (socket.AF_INET, socket.AF_INET6):
            body = c.rtm(fam, 0) + c.attr(c.RTA_OIF, c.i32(index))
            req = Request("list routes", c.RTM_GETROUTE, _NLM_F_DUMP, body)
            for oif, _table, _rtype, route in self._dump(req, _route_unless_kernel_made):
                if oif == index or any(h.ifindex == index for h in route.nexthops):
                    out.append(route)
        return out

    def default_routes(self, family: int, table: int = c.RT_TABLE_MAIN) -> list[DefaultRoute]:
        """The family's default routes in `table`, through any link: what a caller records
        before `replace_default_route` and puts back later with `put_route(..., replace=True)`."""
        body = c.rtm(family, 0, table=table if table < 256 else c.RT_TABLE_UNSPEC)
        body += c.attr(c.RTA_TABLE, c.u32(table)) if table >= 256 else b""
        req = Request("list default routes", c.RTM_GETROUTE, _NLM_F_DUMP, body)
        return [
            DefaultRoute(oif, route)
            for oif, in_table, _rtype, route in self._dump(req, c.parse_route)
            # The kernel filters by table; the prefix length is ours to check.
            if in_table == table and c.split_cidr(route.destination)[1] == 0
        ]

    def add_route(
        self,
        index: int,
        destination: str,
        gateway: str | None = None,
        *,
        metric: int | None = None,
        protocol: int | None = None,
        source: str | None = None,
        table: int = c.RT_TABLE_MAIN,
        scope: int | None = None,
        onlink: bool = False,
    ) -> Request:
        """`ip route add DESTINATION [via GATEWAY] dev INDEX [table T] [scope S] [src SOURCE]
        [metric M] [onlink]`. `scope` None is ip's default: universe via a gateway, else link.
        ValueError (before any I/O) when the gateway or source is of another family than the
        destination: the kernel would read the first 4 bytes of an IPv6 gateway as IPv4."""
        spec = _RouteSpec(destination, gateway, metric, protocol, source, table, scope, onlink)
        return Request(f"add route {spec.text()}", c.RTM_NEWROUTE, _NEW, spec.body(index))

    def replace_default_route(
        self,
        family: int,
        index: int,
        gateway: str | None = None,
        *,
        metric: int | None = None,
        source: str | None = None,
        onlink: bool = False,
        protocol: int | None = None,
    ) -> Request:
        """`ip route replace default ...` in the main table: takes the place of the family's
        default route with the same metric (the kernel keys a route by destination, TOS and
        metric), or adds one when there is none. To displace the pod's primary default route,
        pass its metric (from `default_routes`)."""
        any_addr = "::/0" if family == socket.AF_INET6 else "0.0.0.0/0"
        spec = _RouteSpec(any_addr, gateway, metric, protocol, source, onlink=onlink)
        return Request(f"replace route {spec.text()}", c.RTM_NEWROUTE, _PUT, spec.body(index))

    def put_route(self, route: RouteEntry, *, oif: int | None, replace: bool = False) -> Request:
        """Add `route` with everything it carries (table, type, scope, flags, metrics, paths).
        `oif` is the single-path route's device; `replace` overwrites a route with the same key
        (a multipath route whose other paths outlived ours)."""
        flags = (_NLM_F_ACK | _NLM_F_CREATE | _NLM_F_REPLACE) if replace else _NEW
        body = _full_route(route, oif, default_proto=c.RTPROT_BOOT)
        return Request(f"add route {_route_text(route)}", c.RTM_NEWROUTE, flags, body)

    def del_route(self, index: int, route: RouteEntry) -> Request:
        body = _full_route(route, None if route.nexthops else index, default_proto=0)
        return Request(f"delete route {_route_text(route)}", c.RTM_DELROUTE, _NLM_F_ACK, body)

    # -- policy rules ----------------------------------------------------------------------

    def rules(self, family: int) -> list[Rule]:
        """The family's lookup rules in the kernel's (priority) order, its own included (0
        local, 32766 main, and for IPv4 32767 default); rules with other actions are left out.
        Selectors `Rule` does not model (fwmark, not, ipproto, ports, ...) are not shown: find
        ours by priority and table, not by the absence of those."""
        req = Request("list rules", c.RTM_GETRULE, _NLM_F_DUMP, c.fib_rule(family))
        return [rule for action, rule in self._dump(req, c.parse_rule) if action == c.FR_ACT_TO_TBL]

    def add_rule(self, rule: Rule, *, family: int | None = None) -> Request:
        """`ip rule add priority P [from SRC] [to DST] [iif X] [oif Y] lookup T`. The family is
        that of `src`/`dst`; `family` is needed only when the rule has neither. An equal rule
        already there is an error (EEXIST), as for addresses and routes."""
        body = _rule(rule, family)
        return Request(f"add rule {rule.text()}", c.RTM_NEWRULE, _NEW, body)

    def del_rule(self, rule: Rule, *, family: int | None = None) -> Request:
        """Delete the rule with exactly these selectors, priority and table (ENOENT if none)."""
        body = _rule(rule, family)
        return Request(f"delete rule {rule.text()}", c.RTM_DELRULE, _NLM_F_ACK, body)

    # -- neighbours ------------------------------------------------------------------------

    def neighbors(self, index: int) -> list[Neighbor]:
        """The link's ARP entries, then its NDP entries (one dump per family: an AF_UNSPEC dump
        would add the bridge FDB, which is no neighbour table)."""
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            body = c.ndmsg(fam) + c.attr(c.NDA_IFINDEX, c.u32(index))
            req = Request(f"list neighbors of link {index}", c.RTM_GETNEIGH, _NLM_F_DUMP, body)
            for at, entry in self._dump(req, c.parse_neighbor):
                if at == index and entry is not None:
                    out.append(entry)
        return out

    def add_neighbor(self, index: int, address: str, mac: str) -> Request:
        """`ip neigh replace ADDRESS lladdr MAC dev INDEX nud permanent`: replaces a learned
        entry for the address (the pod may have resolved it before we got there)."""
        body = c.ndmsg(c.family(address), index, state=c.NUD_PERMANENT)
        body += c.attr(c.NDA_DST, c.ip(address)) + c.attr(c.NDA_LLADDR, c.mac(mac))
        op = f"add neighbor {address} lladdr {mac} dev {index}"
        return Request(op, c.RTM_NEWNEIGH, _PUT, body)

    def del_neighbor(self, index: int, address: str) -> Request:
        body = c.ndmsg(c.family(address), index) + c.attr(c.NDA_DST, c.ip(address))
        op = f"delete neighbor {address} dev {index}"
        return Request(op, c.RTM_DELNEIGH, _NLM_F_ACK, body)


# Route origins the kernel manages by itself: restoring such a route would duplicate its own.
_KERNEL_MADE = {c.RTPROT_REDIRECT, c.RTPROT_KERNEL, c.RTPROT_RA}
_SKIP_STATS = c.attr(c.IFLA_EXT_MASK, c.u32(c.RTEXT_FILTER_SKIP_STATS))


def _route_unless_kernel_made(body: bytes) -> tuple[int | None, int, int, RouteEntry] | None:
    """A dumped route, or None (not parsed at all) when the kernel made it itself."""
    return None if c.route_protocol(body) in _KERNEL_MADE else c.parse_route(body)


def _addr(index: int, cidr: str, broadcast: str | None, nodad: bool, *, scope: int = 0) -> bytes:
    addr, plen = c.split_cidr(cidr)
    fam = c.family(addr)
    flags = c.IFA_F_NODAD if nodad and fam == socket.AF_INET6 else 0
    raw = c.ip(addr)
    body = c.ifaddr(fam, plen, index, flags=flags, scope=scope)
    body += c.attr(c.IFA_LOCAL, raw) + c.attr(c.IFA_ADDRESS, raw)
    if broadcast:
        body += c.attr(c.IFA_BROADCAST, c.ip(broadcast))
    return body


@dataclass(frozen=True, slots=True)
class _RouteSpec:
    """A single-path unicast route as `ip route add` takes it (see `Rtnl.add_route`)."""

    destination: str
    gateway: str | None
    metric: int | None
    protocol: int | None
    source: str | None
    table: int = c.RT_TABLE_MAIN
    scope: int | None = None
    onlink: bool = False

    def text(self) -> str:
        out = self.destination + (f" via {self.gateway}" if self.gateway else "")
        out += f" table {self.table}" if self.table != c.RT_TABLE_MAIN else ""
        out += f" metric {self.metric}" if self.metric is not None else ""
        return out + (" onlink" if self.onlink else "")

    def body(self, index: int) -> bytes:
        """Encoded by `_full_route`, the one route encoder, after the family check."""
        fam = c.family(c.split_cidr(self.destination)[0])
        for what, addr in (("gateway", self.gateway), ("source", self.source)):
            if addr and c.family(addr) != fam:
                raise ValueError(f"route {self.text()}: {what} {addr} is of another family")
        # `ip route` defaults: a route via a gateway has global scope, a direct one link scope.
        default_scope = c.RT_SCOPE_UNIVERSE if self.gateway else c.RT_SCOPE_LINK
        entry = RouteEntry(
            destination=self.destination,
            gateway=self.gateway,
            metric=self.metric,
            protocol=c.RTPROT_BOOT if self.protocol is None else self.protocol,
            source=self.source,
            scope=default_scope if self.scope is None else self.scope,
            table=self.table,
            flags=c.RTNH_F_ONLINK if self.onlink else 0,
        )
        return _full_route(entry, index, default_proto=c.RTPROT_BOOT)


def _rule(rule: Rule, family: int | None) -> bytes:
    """The fib_rule_hdr and attributes of a lookup rule. ValueError when the family is unclear
    or mixed: the kernel would read an IPv6 FRA_SRC's first 4 bytes as an IPv4 address."""
    src, src_len = c.split_cidr(rule.src) if rule.src else ("", 0)
    dst, dst_len = c.split_cidr(rule.dst) if rule.dst else ("", 0)
    families = {c.family(a) for a in (src, dst) if a} | ({family} if family is not None else set())
    if len(families) != 1:
        why = "mixes address families" if families else "needs a family (no from or to)"
        raise ValueError(f"rule {rule.text()}: {why}")
    body = c.fib_rule(
        families.pop(),
        dst_len=dst_len,
        src_len=src_len,
        table=rule.table if rule.table < 256 else c.RT_TABLE_UNSPEC,
        action=c.FR_ACT_TO_TBL,
    )
    body += c.attr(c.FRA_PRIORITY, c.u32(rule.priority)) + c.attr(c.FRA_TABLE, c.u32(rule.table))
    if src:
        body += c.attr(c.FRA_SRC, c.ip(src))
    if dst:
        body += c.attr(c.FRA_DST, c.ip(dst))
    if rule.iif:
        body += c.attr(c.FRA_IIFNAME, c.string(rule.iif))
    if rule.oif:
        body += c.attr(c.FRA_OIFNAME, c.string(rule.oif))
    return body


def _route_text(route: RouteEntry) -> str:
    via = f" via {route.gateway}" if route.gateway else ""
    paths = "".join(f" nexthop via {h.gateway} dev {h.ifindex}" for h in route.nexthops)
    table = f" table {route.table}" if route.table != c.RT_TABLE_MAIN else ""
    return f"{route.destination}{via}{paths}{table}"


def _full_route(route: RouteEntry, oif: int | None, *, default_proto: int) -> bytes:
    dst, plen = c.split_cidr(route.destination)
    fam = c.family(dst)
    # Table ids above 255 only fit the attribute; the header then says "unspecified".
    body = c.rtm(
        fam,
        plen,
        table=route.table if route.table < 256 else c.RT_TABLE_UNSPEC,
        proto=route.protocol or default_proto,
        scope=route.scope,
        rtype=route.type,
        tos=route.tos,
        flags=route.flags & c.RTNH_F_ONLINK,
    )
    body += c.attr(c.RTA_TABLE, c.u32(route.table))
    if oif is not None:
        body += c.attr(c.RTA_OIF, c.i32(oif))
    if plen:
        body += c.attr(c.RTA_DST, c.ip(dst))
    if route.gateway:
        body += c.attr(c.RTA_GATEWAY, c.ip(route.gateway))
    if route.metric is not None:
        body += c.attr(c.RTA_PRIORITY, c.u32(route.metric))
    if route.source:
        body += c.attr(c.RTA_PREFSRC, c.ip(route.source))
    if route.pref is not None:
        body += c.attr(c.RTA_PREF, bytes([route.pref]))
    if route.metrics:
        body += c.attr(c.RTA_METRICS, b"".join(c.attr(k, c.u32(v)) for k, v in route.metrics))
    if route.nexthops:
        body += c.attr(c.RTA_MULTIPATH, c.rtnexthops(fam, route.nexthops))
    return body


def _parse_error(flags: int, body: bytes) -> tuple[int, str]:
    """NLMSG_ERROR payload: -errno, the request's header (capped), then extended-ack TLVs."""
    (code,) = struct.unpack_from("=i", body, 0)
    detail = ""
    if flags & _NLM_F_ACK_TLVS:
        off = 4 + 16
        if not flags & _NLM_F_CAPPED:
            (orig_len,) = struct.unpack_from("=I", body, 4)
            off = 4 + orig_len
        msg = c.tlvs(body, off).get(_NLMSGERR_ATTR_MSG)
        if msg:
            detail = msg.rstrip(b"\0").decode(errors="replace")
    return -code, detail
