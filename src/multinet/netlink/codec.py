"""rtnetlink message bodies, packed and parsed by hand for the few messages we use.

Why by hand: on the attach path every request counts. pyroute2's message classes cost ~0.17 ms to
encode one message and ~0.5 ms to decode a full link message on these (busy, 2-core) machines,
which added up to several milliseconds per attach; `struct` does the same in microseconds.
No I/O here: bytes in, values out (and the reverse). Numbers are from <linux/rtnetlink.h>,
<linux/if_link.h>, <linux/if_addr.h>, <linux/fib_rules.h> and <linux/neighbour.h>.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

# message types
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
# attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 5, 10, 18
IFLA_AF_SPEC, IFLA_NET_NS_FD, IFLA_EXT_MASK, IFLA_PERM_ADDRESS = 26, 28, 29, 54
IFLA_NEW_IFINDEX = 49
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_MACVLAN_MODE = 1, 2, 1
IFLA_INET6_ADDR_GEN_MODE = 8  # inside IFLA_AF_SPEC / AF_INET6
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS, IFA_PROTO = 1, 2, 3, 4, 8, 11
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 4, 5, 6, 7
RTA_METRICS, RTA_MULTIPATH, RTA_TABLE, RTA_PREF = 8, 9, 15, 20
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_TABLE, FRA_OIFNAME = 1, 2, 3, 6, 15, 17
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
# values
IFF_UP = 0x1
IFA_F_SECONDARY = IFA_F_TEMPORARY = 0x01  # one bit, two meanings: IPv4 secondary, IPv6 privacy
IFA_F_NODAD, IFA_F_OPTIMISTIC, IFA_F_HOMEADDRESS = 0x02, 0x04, 0x10
IFA_F_MANAGETEMPADDR, IFA_F_NOPREFIXROUTE, IFA_F_MCAUTOJOIN = 0x100, 0x200, 0x400
# The flags a user sets when adding an address (`ip addr add ... nodad noprefixroute`); the others
# (secondary, tentative, deprecated, permanent, ...) are the kernel's own bookkeeping.
IFA_F_USER = (
    IFA_F_NODAD
    | IFA_F_OPTIMISTIC
    | IFA_F_HOMEADDRESS
    | IFA_F_MANAGETEMPADDR
    | IFA_F_NOPREFIXROUTE
    | IFA_F_MCAUTOJOIN
)
IFAPROT_KERNEL_LO, IFAPROT_KERNEL_RA, IFAPROT_KERNEL_LL = 1, 2, 3  # addresses the kernel made
MACVLAN_MODE_BRIDGE = 4
#: IFLA_MACVLAN_MODE values by the names `ip link ... type macvlan mode X` uses.
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": MACVLAN_MODE_BRIDGE, "passthru": 8}
RT_TABLE_UNSPEC, RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 0, 253, 254, 255
RTPROT_REDIRECT, RTPROT_KERNEL, RTPROT_BOOT, RTPROT_RA = 1, 2, 3, 9
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTN_UNICAST = 1
RTNH_F_ONLINK = 0x4
RTEXT_FILTER_SKIP_STATS = 1 << 3  # IFLA_EXT_MASK: a link without its counters
RTAX_CC_ALGO = 16
FR_ACT_TO_TBL = 1  # a rule's action "lookup <table>"
NUD_PERMANENT = 0x80
_NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF

_IFI = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFA = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTM = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, proto, scope,
#                                     type, flags
_FRH = struct.Struct("=BBBBBBBBI")  # fib_rule_hdr: family, dst_len, src_len, tos, table, res1,
#                                     res2, action, flags
_NDM = struct.Struct("=BxxxiHBB")  # ndmsg: family, (pad), ifindex, state, flags, type
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops (weight - 1), ifindex
_NLA = struct.Struct("=HH")  # nlattr: len, type
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


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
    master: int | None = None  # IFLA_MASTER: the bridge (or bond) it is a port of
    addr_gen_mode: int | None = None  # IPv6 link-local generation (0 eui64, 1 none, ...)


@dataclass(frozen=True, slots=True)
class Address:
    cidr: str
    broadcast: str | None
    flags: int = 0  # IFA_F_*, all 32 bits (IFA_FLAGS)
    label: str | None = None  # IPv4 only
    scope: int = 0
    proto: int = 0  # IFA_PROTO: who added it; 0 when unspecified (or an older kernel)


@dataclass(frozen=True, slots=True)
class NextHop:
    """One path of a multipath route."""

    ifindex: int
    gateway: str | None
    weight: int = 1
    flags: int = 0  # RTNH_F_*


@dataclass(frozen=True, slots=True)
class RouteEntry:
    destination: str
    gateway: str | None
    metric: int | None
    protocol: int
    source: str | None
    scope: int
    table: int = RT_TABLE_MAIN
    type: int = RTN_UNICAST
    tos: int = 0
    flags: int = 0  # rtm_flags; RTNH_F_ONLINK for `onlink`
    pref: int | None = None  # IPv6 router preference (RTA_PREF)
    metrics: tuple[tuple[int, int], ...] = ()  # RTA_METRICS as (RTAX_*, value): mtu, window, ...
    nexthops: tuple[NextHop, ...] = ()  # multipath; then `gateway` is None


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    """A default route and the link it leaves through (None for a multipath route: see its
    nexthops), as `default_routes` records it and `put_route(route, oif=oif, replace=True)` puts
    it back."""

    oif: int | None
    route: RouteEntry


@dataclass(frozen=True, slots=True)
class Rule:
    """A policy rule `ip rule` shows as "P: from SRC to DST iif X oif Y lookup T" (only lookup
    rules: the only action we make). The address family is not part of it: a rule with neither
    `src` nor `dst` needs one said, and `rules()` lists one family at a time anyway."""

    priority: int
    table: int
    src: str | None = None  # CIDR; None is "from all"
    dst: str | None = None  # CIDR; None is "to all"
    iif: str | None = None  # interface names, not indexes: a rule outlives and precedes its links
    oif: str | None = None

    def text(self) -> str:
        """As `ip rule` prints it."""
        parts = [f"{self.priority}: from {self.src or 'all'}"]
        parts += [f"to {self.dst}"] if self.dst else []
        parts += [f"iif {self.iif}"] if self.iif else []
        parts += [f"oif {self.oif}"] if self.oif else []
        return " ".join([*parts, f"lookup {self.table}"])


@dataclass(frozen=True, slots=True)
class Neighbor:
    """An ARP/NDP entry: `mac` is None while the kernel is still resolving (or has failed to)."""

    address: str
    mac: str | None
    state: int  # NUD_*: NUD_PERMANENT for ours


# -- packing -----------------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    raw = _NLA.pack(4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | _NLA_F_NESTED, b"".join(attrs))


def u32(value: int) -> bytes:
    return _U32.pack(value)


def i32(value: int) -> bytes:
    return _I32.pack(value)


def string(value: str) -> bytes:
    return value.encode() + b"\0"


def mac(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", "").replace("-", ""))


def family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ip(addr: str) -> bytes:
    return socket.inet_pton(family(addr), addr)


def split_cidr(cidr: str) -> tuple[str, int]:
    addr, _, plen = cidr.partition("/")
    return addr, int(plen) if plen else (128 if ":" in addr else 32)


def ifinfo(index: int = 0, *, flags: int = 0, change: int = 0) -> bytes:
    return _IFI.pack(0, 0, index, flags, change)


def ifaddr(fam: int, prefixlen: int, index: int, *, flags: int = 0, scope: int = 0) -> bytes:
    return _IFA.pack(fam, prefixlen, flags, scope, index)


def rtm(fam: int, dst_len: int, *, table: int = 0, proto: int = 0, scope: int = 0,
        rtype: int = 0, tos: int = 0, flags: int = 0) -> bytes:  # fmt: skip
    return _RTM.pack(fam, dst_len, 0, tos, table, proto, scope, rtype, flags)


def fib_rule(fam: int, *, dst_len: int = 0, src_len: int = 0, table: int = 0,
             action: int = 0) -> bytes:  # fmt: skip
    return _FRH.pack(fam, dst_len, src_len, 0, table, 0, 0, action, 0)


def ndmsg(fam: int, index: int = 0, *, state: int = 0) -> bytes:
    return _NDM.pack(fam, index, state, 0, 0)


def rtnexthops(fam: int, hops: tuple[NextHop, ...]) -> bytes:
    """The RTA_MULTIPATH payload: one rtnexthop (+ its gateway) per path."""
    out = b""
    for hop in hops:
        gw = attr(RTA_GATEWAY, socket.inet_pton(fam, hop.gateway)) if hop.gateway else b""
        out += _RTNH.pack(_RTNH.size + len(gw), hop.flags, hop.weight - 1, hop.ifindex) + gw
    return out


# -- parsing -----------------------------------------------------------------------------------


def tlvs(data: bytes, off: int) -> dict[int, bytes]:
    """Attributes from `off` on, by type (the first of each type wins)."""
    out: dict[int, bytes] = {}
    end = len(data)
    unpack = _NLA.unpack_from
    while off + 4 <= end:
        alen, atype = unpack(data, off)
        if alen < 4:
            break
        out.setdefault(atype & _NLA_TYPE_MASK, data[off + 4 : off + alen])
        off += (alen + 3) & ~3
    return out


def _mac_text(raw: bytes | None) -> str | None:
    return None if raw is None else ":".join(f"{b:02x}" for b in raw)


def _ip_text(fam: int, raw: bytes | None) -> str | None:
    return None if raw is None else socket.inet_ntop(fam, raw)


def parse_link(body: bytes) -> Link:
    """An RTM_NEWLINK body (without the netlink header): only the attributes we use."""
    _fam, _type, index, flags, _change = _IFI.unpack_from(body, 0)
    attrs = tlvs(body, _IFI.size)
    info = tlvs(attrs[IFLA_LINKINFO], 0) if IFLA_LINKINFO in attrs else {}
    perm = _mac_text(attrs.get(IFLA_PERM_ADDRESS))
    inet6 = tlvs(attrs[IFLA_AF_SPEC], 0).get(socket.AF_INET6) if IFLA_AF_SPEC in attrs else None
    gen_mode = tlvs(inet6, 0).get(IFLA_INET6_ADDR_GEN_MODE) if inet6 is not None else None
    return Link(
        index=index,
        name=attrs[IFLA_IFNAME].rstrip(b"\0").decode(),
        mtu=_U32.unpack(attrs[IFLA_MTU])[0] if IFLA_MTU in attrs else 0,
        mac=_mac_text(attrs.get(IFLA_ADDRESS)) or "",
        perm_mac=None if perm is None or perm == "00:00:00:00:00:00" else perm,
        up=bool(flags & IFF_UP),
        kind=info[IFLA_INFO_KIND].rstrip(b"\0").decode() if IFLA_INFO_KIND in info else None,
        parent=_I32.unpack(attrs[IFLA_LINK])[0] if IFLA_LINK in attrs else None,
        master=_U32.unpack(attrs[IFLA_MASTER])[0] if IFLA_MASTER in attrs else None,
        addr_gen_mode=gen_mode[0] if gen_mode else None,
    )


def parse_address(body: bytes) -> tuple[int, Address]:
    """An RTM_NEWADDR body: (ifindex, address)."""
    fam, plen, flags, scope, index = _IFA.unpack_from(body, 0)
    attrs = tlvs(body, _IFA.size)
    local = _ip_text(fam, attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS))
    label = attrs.get(IFA_LABEL)
    return index, Address(
        f"{local}/{plen}",
        _ip_text(fam, attrs.get(IFA_BROADCAST)),
        flags=_U32.unpack(attrs[IFA_FLAGS])[0] if IFA_FLAGS in attrs else flags,
        label=label.rstrip(b"\0").decode() if label else None,
        scope=scope,
        proto=attrs[IFA_PROTO][0] if IFA_PROTO in attrs else 0,
    )


def route_protocol(body: bytes) -> int:
    """An RTM_NEWROUTE body's origin (rtm_protocol), read without parsing the rest."""
    return body[5]


def parse_route(body: bytes) -> tuple[int | None, int, int, RouteEntry]:
    """An RTM_NEWROUTE body: (oif, table, type, route)."""
    fam, dst_len, _src, tos, table, proto, scope, rtype, flags = _RTM.unpack_from(body, 0)
    attrs = tlvs(body, _RTM.size)
    if RTA_TABLE in attrs:
        table = _U32.unpack(attrs[RTA_TABLE])[0]
    dst = _ip_text(fam, attrs.get(RTA_DST)) or ("::" if fam == socket.AF_INET6 else "0.0.0.0")
    route = RouteEntry(
        destination=f"{dst}/{dst_len}",
        gateway=_ip_text(fam, attrs.get(RTA_GATEWAY)),
        metric=_U32.unpack(attrs[RTA_PRIORITY])[0] if RTA_PRIORITY in attrs else None,
        protocol=proto,
        source=_ip_text(fam, attrs.get(RTA_PREFSRC)),
        scope=scope,
        table=table,
        type=rtype,
        tos=tos,
        flags=flags,
        pref=attrs[RTA_PREF][0] if RTA_PREF in attrs else None,
        metrics=_metrics(attrs.get(RTA_METRICS)),
        nexthops=_nexthops(fam, attrs.get(RTA_MULTIPATH)),
    )
    oif = _I32.unpack(attrs[RTA_OIF])[0] if RTA_OIF in attrs else None
    return oif, table, rtype, route


def _metrics(raw: bytes | None) -> tuple[tuple[int, int], ...]:
    """RTA_METRICS: nested u32 values (the congestion-control name, a string, is left out)."""
    if raw is None:
        return ()
    metrics = tlvs(raw, 0).items()
    return tuple(sorted((k, _U32.unpack(v)[0]) for k, v in metrics if k != RTAX_CC_ALGO))


def _nexthops(fam: int, raw: bytes | None) -> tuple[NextHop, ...]:
    if raw is None:
        return ()
    out = []
    off = 0
    while off + _RTNH.size <= len(raw):
        length, flags, hops, ifindex = _RTNH.unpack_from(raw, off)
        if length < _RTNH.size:
            break
        gw = tlvs(raw[off + _RTNH.size : off + length], 0).get(RTA_GATEWAY)
        out.append(NextHop(ifindex, _ip_text(fam, gw), weight=hops + 1, flags=flags))
        off += (length + 3) & ~3
    return tuple(out)


def parse_rule(body: bytes) -> tuple[int, Rule]:
    """An RTM_NEWRULE body: (action, rule); `table` comes from FRA_TABLE (it may exceed 255)."""
    fam, dst_len, src_len, _tos, table, _r1, _r2, action, _flags = _FRH.unpack_from(body, 0)
    attrs = tlvs(body, _FRH.size)
    src, dst = _ip_text(fam, attrs.get(FRA_SRC)), _ip_text(fam, attrs.get(FRA_DST))
    return action, Rule(
        priority=_U32.unpack(attrs[FRA_PRIORITY])[0] if FRA_PRIORITY in attrs else 0,
        table=_U32.unpack(attrs[FRA_TABLE])[0] if FRA_TABLE in attrs else table,
        src=f"{src}/{src_len}" if src else None,
        dst=f"{dst}/{dst_len}" if dst else None,
        iif=_text(attrs.get(FRA_IIFNAME)),
        oif=_text(attrs.get(FRA_OIFNAME)),
    )


def parse_neighbor(body: bytes) -> tuple[int, Neighbor | None]:
    """An RTM_NEWNEIGH body: (ifindex, entry); None for an entry without an IP address."""
    fam, index, state, _flags, _type = _NDM.unpack_from(body, 0)
    attrs = tlvs(body, _NDM.size)
    address = _ip_text(fam, attrs.get(NDA_DST))
    if address is None:
        return index, None
    return index, Neighbor(address, _mac_text(attrs.get(NDA_LLADDR)), state)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.rstrip(b"\0").decode()
