"""A lean, blocking rtnetlink client bound to one network namespace.

Why not pyroute2's `IPRoute`: in 0.9 every sync call runs an asyncio loop underneath and costs
~1 ms of Python per request here, which would double the attach hook's time on top of the kernel's.
We keep pyroute2 for what it is good at (encoding and decoding the message structures) and do the
socket work ourselves: one `send` per request (or batch of requests), one `recv` loop for acks.

Blocking by design: callers run it on a worker thread (see `executor.py`), never on the event loop.
Errors come out as `RtnlError` (an OSError with the kernel's errno and extended-ack text); the
attach/detach layer maps them to multinet errors.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_CAPPED = 0x100
_NLM_F_ACK_TLVS = 0x200
_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11
_NETLINK_GET_STRICT_CHK = 12
_NLMSGERR_ATTR_MSG = 1
_IFF_UP = 0x1
_RT_TABLE_MAIN = 254
_RTPROT_KERNEL = 2
_RTPROT_BOOT = 3
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_LINK = 253
_RTN_UNICAST = 1
_IFA_F_NODAD = 0x02
_MACVLAN_MODE_BRIDGE = 4
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid


class RtnlError(OSError):
    """A request the kernel refused; `op` says which, `str()` adds the kernel's own words."""

    def __init__(self, code: int, op: str, detail: str = "") -> None:
        self.op = op
        self.detail = detail
        text = os.strerror(code) + (f" ({detail})" if detail else "")
        super().__init__(code, f"{op}: {text}")


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    mtu: int
    mac: str
    perm_mac: str | None
    up: bool
    kind: str | None  # "veth", "macvlan", ... None for physical NICs
    parent: int | None  # IFLA_LINK: parent ifindex (macvlan) or peer (veth)


@dataclass(frozen=True, slots=True)
class Address:
    cidr: str
    broadcast: str | None


@dataclass(frozen=True, slots=True)
class RouteEntry:
    destination: str
    gateway: str | None
    metric: int | None
    protocol: int
    source: str | None
    scope: int


@dataclass(frozen=True, slots=True)
class Request:
    """One message of a batch with a label for error messages ("add address 10.0.0.2/24")."""

    op: str
    type: int
    flags: int
    msg: Any  # a pyroute2 nlmsg, not yet encoded


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _split(cidr: str) -> tuple[str, int]:
    addr, _, plen = cidr.partition("/")
    if not plen:
        plen = "128" if ":" in addr else "32"
    return addr, int(plen)


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

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _encode(self, req: Request) -> tuple[int, bytes]:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        hdr = req.msg["header"]
        hdr["type"] = req.type
        hdr["flags"] = req.flags | NLM_F_REQUEST
        hdr["sequence_number"] = self._seq
        req.msg.encode()
        return self._seq, bytes(req.msg.data)

    def batch(self, reqs: Sequence[Request]) -> list[RtnlError | None]:
        """Send all requests in one write; the kernel runs them in order and acks each one.

        A failed request does not stop the later ones, so callers undo on any error.
        """
        if not reqs:
            return []
        wire = [self._encode(r) for r in reqs]
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

    def _get(self, req: Request, cls: Any) -> Any:
        """A single GET: the answer decoded with `cls`, or None when the object does not exist."""
        seq, data = self._encode(req)
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
                msg = cls(_HDR.pack(len(body) + 16, mtype, flags, rseq, 0) + body)
                msg.decode()
                return msg

    def _dump(self, req: Request, cls: Any) -> list[Any]:
        seq, data = self._encode(req)
        self._sock.send(data)
        out: list[Any] = []
        while True:
            for mtype, flags, rseq, body in self._messages():
                if rseq != seq:
                    continue
                if mtype == _NLMSG_DONE:
                    return out
                if mtype == _NLMSG_ERROR:
                    code, detail = _parse_error(flags, body)
                    raise RtnlError(code or errno_mod.EIO, req.op, detail)
                msg = cls(_HDR.pack(len(body) + 16, mtype, flags, rseq, 0) + body)
                msg.decode()
                out.append(msg)

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
        msg = ifinfmsg()
        msg["index"] = index
        if name is not None:
            msg["attrs"] = [("IFLA_IFNAME", name)]
        found = self._get(Request(f"get link {name or index}", RTM_GETLINK, 0, msg), _RawLink)
        return None if found is None else found.link

    def links(self) -> list[Link]:
        msg = ifinfmsg()
        req = Request("list links", RTM_GETLINK, NLM_F_DUMP, msg)
        return [m.link for m in self._dump(req, _RawLink)]

    def set_link(
        self,
        index: int,
        *,
        netns_fd: int | None = None,
        name: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool | None = None,
        op: str = "",
    ) -> Request:
        """One RTM_NEWLINK (setlink). The kernel applies the netns move (with the new name) first,
        then MAC and MTU, then the up/down flag: so one message can move, rename and resize."""
        msg = ifinfmsg()
        msg["index"] = index
        attrs: list[tuple[str, Any]] = []
        if netns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", netns_fd))
        if name is not None:
            attrs.append(("IFLA_IFNAME", name))
        if mac is not None:
            attrs.append(("IFLA_ADDRESS", mac))
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        msg["attrs"] = attrs
        if up is not None:
            msg["change"] = _IFF_UP
            msg["flags"] = _IFF_UP if up else 0
        return Request(op or f"set link {index}", RTM_NEWLINK, NLM_F_ACK, msg)

    def new_macvlan(
        self, parent: int, *, name: str, netns_fd: int, mac: str | None, mtu: int | None
    ) -> Request:
        """Create a bridge-mode macvlan child of `parent` directly inside another namespace."""
        msg = ifinfmsg()
        attrs: list[tuple[str, Any]] = [
            ("IFLA_IFNAME", name),
            ("IFLA_LINK", parent),
            ("IFLA_NET_NS_FD", netns_fd),
            (
                "IFLA_LINKINFO",
                {
                    "attrs": [
                        ("IFLA_INFO_KIND", "macvlan"),
                        (
                            "IFLA_INFO_DATA",
                            {"attrs": [("IFLA_MACVLAN_MODE", _MACVLAN_MODE_BRIDGE)]},
                        ),
                    ]
                },
            ),
        ]
        if mac is not None:
            attrs.append(("IFLA_ADDRESS", mac))
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        msg["attrs"] = attrs
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        return Request(f"create macvlan {name} on parent {parent}", RTM_NEWLINK, flags, msg)

    def del_link(self, index: int, op: str = "") -> Request:
        msg = ifinfmsg()
        msg["index"] = index
        return Request(op or f"delete link {index}", RTM_DELLINK, NLM_F_ACK, msg)

    # -- addresses -------------------------------------------------------------------------

    def addresses(self, index: int) -> list[Address]:
        """The link's addresses in kernel order (the order `ip addr` shows)."""
        msg = ifaddrmsg()
        msg["index"] = index
        out = []
        for m in self._dump(Request("list addresses", RTM_GETADDR, NLM_F_DUMP, msg), ifaddrmsg):
            if m["index"] != index:
                continue
            local = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
            out.append(Address(f"{local}/{m['prefixlen']}", m.get_attr("IFA_BROADCAST")))
        return out

    def _addr(
        self,
        rtype: int,
        flags: int,
        index: int,
        cidr: str,
        broadcast: str | None,
        op: str,
        nodad: bool = False,
    ) -> Request:
        addr, plen = _split(cidr)
        msg = ifaddrmsg()
        msg["family"] = _family(addr)
        msg["prefixlen"] = plen
        msg["index"] = index
        attrs: list[tuple[str, Any]] = [("IFA_LOCAL", addr), ("IFA_ADDRESS", addr)]
        if broadcast:
            attrs.append(("IFA_BROADCAST", broadcast))
        if nodad and msg["family"] == socket.AF_INET6:
            msg["flags"] = _IFA_F_NODAD
        msg["attrs"] = attrs
        return Request(op, rtype, flags, msg)

    def add_address(
        self, index: int, cidr: str, broadcast: str | None = None, *, nodad: bool = False
    ) -> Request:
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        return self._addr(RTM_NEWADDR, flags, index, cidr, broadcast, f"add address {cidr}", nodad)

    def del_address(self, index: int, cidr: str) -> Request:
        return self._addr(RTM_DELADDR, NLM_F_ACK, index, cidr, None, f"delete address {cidr}")

    # -- routes ----------------------------------------------------------------------------

    def routes(self, index: int) -> list[RouteEntry]:
        """Main-table unicast routes through the link that the kernel did not make itself."""
        out = []
        # One dump per family: an AF_UNSPEC dump with these filters returns IPv4 routes only.
        for family in (socket.AF_INET, socket.AF_INET6):
            msg = rtmsg()
            msg["family"] = family
            msg["attrs"] = [("RTA_TABLE", _RT_TABLE_MAIN), ("RTA_OIF", index)]
            for m in self._dump(Request("list routes", RTM_GETROUTE, NLM_F_DUMP, msg), rtmsg):
                table = m.get_attr("RTA_TABLE") or m["table"]
                if (
                    m.get_attr("RTA_OIF") != index
                    or table != _RT_TABLE_MAIN
                    or m["proto"] == _RTPROT_KERNEL
                    or m["type"] != _RTN_UNICAST
                ):
                    continue
                dst = m.get_attr("RTA_DST") or (
                    "::" if m["family"] == socket.AF_INET6 else "0.0.0.0"
                )
                out.append(
                    RouteEntry(
                        destination=f"{dst}/{m['dst_len']}",
                        gateway=m.get_attr("RTA_GATEWAY"),
                        metric=m.get_attr("RTA_PRIORITY"),
                        protocol=m["proto"],
                        source=m.get_attr("RTA_PREFSRC"),
                        scope=m["scope"],
                    )
                )
        return out

    def _route(
        self,
        rtype: int,
        flags: int,
        index: int,
        destination: str,
        gateway: str | None,
        metric: int | None,
        protocol: int | None,
        source: str | None,
        op: str,
    ) -> Request:
        dst, plen = _split(destination)
        msg = rtmsg()
        msg["family"] = _family(dst)
        msg["dst_len"] = plen
        msg["table"] = _RT_TABLE_MAIN
        msg["type"] = _RTN_UNICAST
        msg["proto"] = _RTPROT_BOOT if protocol is None else protocol
        # `ip route` defaults: a route via a gateway has global scope, a direct one link scope.
        msg["scope"] = _RT_SCOPE_UNIVERSE if gateway else _RT_SCOPE_LINK
        attrs: list[tuple[str, Any]] = [("RTA_OIF", index)]
        if plen:
            attrs.append(("RTA_DST", dst))
        if gateway:
            attrs.append(("RTA_GATEWAY", gateway))
        if metric is not None:
            attrs.append(("RTA_PRIORITY", metric))
        if source:
            attrs.append(("RTA_PREFSRC", source))
        msg["attrs"] = attrs
        return Request(op, rtype, flags, msg)

    def add_route(
        self,
        index: int,
        destination: str,
        gateway: str | None = None,
        *,
        metric: int | None = None,
        protocol: int | None = None,
        source: str | None = None,
    ) -> Request:
        via = f" via {gateway}" if gateway else ""
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        return self._route(
            RTM_NEWROUTE,
            flags,
            index,
            destination,
            gateway,
            metric,
            protocol,
            source,
            f"add route {destination}{via}",
        )

    def del_route(self, index: int, route: RouteEntry) -> Request:
        via = f" via {route.gateway}" if route.gateway else ""
        return self._route(
            RTM_DELROUTE,
            NLM_F_ACK,
            index,
            route.destination,
            route.gateway,
            route.metric,
            route.protocol,
            route.source,
            f"delete route {route.destination}{via}",
        )


class _RawLink:
    """Decodes only the link attributes we use, straight from the bytes.

    A full RTM_NEWLINK carries statistics and per-family configuration arrays; decoding all of it
    with pyroute2 costs ~0.5 ms per lookup, more than the kernel's work for it.
    """

    _IFI = struct.Struct("=BxHiII")

    def __init__(self, data: bytes) -> None:
        _family, _type, index, flags, _change = self._IFI.unpack_from(data, 16)
        attrs = _tlvs(data, 32)
        info = _tlvs(attrs[18], 0) if 18 in attrs else {}  # IFLA_LINKINFO
        perm = _mac(attrs.get(54))  # IFLA_PERM_ADDRESS
        self.link = Link(
            index=index,
            name=attrs[3].rstrip(b"\0").decode(),  # IFLA_IFNAME
            mtu=struct.unpack("=I", attrs[4])[0] if 4 in attrs else 0,  # IFLA_MTU
            mac=_mac(attrs.get(1)) or "",  # IFLA_ADDRESS
            perm_mac=None if perm is None or perm == "00:00:00:00:00:00" else perm,
            up=bool(flags & _IFF_UP),
            kind=info[1].rstrip(b"\0").decode() if 1 in info else None,  # IFLA_INFO_KIND
            parent=struct.unpack("=i", attrs[5])[0] if 5 in attrs else None,  # IFLA_LINK
        )

    def decode(self) -> None:
        """Already decoded in __init__ (the transport calls this on every message class)."""


def _tlvs(data: bytes, off: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= len(data):
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        out.setdefault(atype & 0x3FFF, data[off + 4 : off + alen])
        off += (alen + 3) & ~3
    return out


def _mac(raw: bytes | None) -> str | None:
    return None if raw is None else ":".join(f"{b:02x}" for b in raw)


def _parse_error(flags: int, body: bytes) -> tuple[int, str]:
    """NLMSG_ERROR payload: -errno, the request's header (capped), then extended-ack TLVs."""
    (code,) = struct.unpack_from("=i", body, 0)
    detail = ""
    if flags & _NLM_F_ACK_TLVS:
        off = 4 + 16
        if not flags & _NLM_F_CAPPED:
            (orig_len,) = struct.unpack_from("=I", body, 4)
            off = 4 + orig_len
        while off + 4 <= len(body):
            alen, atype = struct.unpack_from("=HH", body, off)
            if alen < 4:
                break
            if atype & 0x3FFF == _NLMSGERR_ATTR_MSG:
                detail = body[off + 4 : off + alen].rstrip(b"\0").decode(errors="replace")
            off += (alen + 3) & ~3
    return -code, detail
