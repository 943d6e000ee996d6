"""The host's links, addresses and default routes, kept current from rtnetlink notifications.

Threading: all netlink I/O *and* message decoding (pyroute2's decoder costs ~0.5 ms per link
message) run on one dedicated thread, never on the asyncio thread that serves NRI and gRPC under
deadlines. That thread owns two raw rtnetlink sockets: one subscribed to link, address and IPv4/
IPv6 route notifications, one for dumps. It keeps the kernel objects in dicts updated message by
message and hands the loop an immutable ``HostSnapshot`` after every batch; the loop side only
debounces and yields.

Consistency: the thread subscribes *before* it dumps, and applies queued notifications after
the dump; every notification carries the object's full state, so replaying them in order after
the dump ends at the kernel's current state. If the kernel drops notifications (ENOBUFS, the
socket buffer overflowed during a burst) the thread re-dumps everything. A full re-dump also
runs every ``resync_seconds`` as a safety net; nothing polls otherwise.

Namespace: ``netns`` (a name under /run/netns) moves only the inventory thread into that
namespace, for benchmarks and tests that must not disturb the host. sysfs facts (PCI, driver,
speed) are read only for the host namespace, because /sys/class/net shows the netns sysfs was
mounted in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from multinet.devices.model import HostSnapshot, Link
from multinet.errors import MultinetError
from multinet.netlink import sysfs

log = logging.getLogger(__name__)

_NETLINK_ROUTE = 0
_GROUPS = 0x1 | 0x10 | 0x40 | 0x100  # RTMGRP_LINK | IPV4_IFADDR | IPV4_ROUTE | IPV6_IFADDR
_GROUP_IPV6_ROUTE = 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_RTM_NEWROUTE, _RTM_DELROUTE, _RTM_GETROUTE = 24, 25, 26
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_IFF_UP, _IFF_LOOPBACK = 0x1, 0x8
_ARPHRD_LOOPBACK = 772
_RT_TABLE_MAIN, _RTN_UNICAST = 254, 1
_CLONE_NEWNET = 0x40000000
_RCVBUF = 8 << 20
# ifinfomsg, then IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS: the kernel leaves out the per-link
# counters (IFLA_STATS/STATS64, a large share of every message) that we would decode for nothing.
_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS = 29, 1 << 3
_GETLINK_BODY = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + struct.pack(
    "=HHI", 8, _IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS
)


class InventoryError(MultinetError):
    """The inventory thread could not read the kernel's interfaces."""


@dataclass(frozen=True)
class _Addr:
    index: int
    family: int
    cidr: str
    scope: int


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into netns {name}: {os.strerror(code)}")
    finally:
        os.close(fd)


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


def _default_route(msg: Any) -> tuple[tuple[Any, ...], tuple[int, ...]] | None:
    """(key, output interfaces) of a main-table default route; None for any other route."""
    table = msg.get("RTA_TABLE") or msg["table"]
    if msg["dst_len"] != 0 or table != _RT_TABLE_MAIN or msg["type"] != _RTN_UNICAST:
        return None
    oifs: list[int] = []
    if msg.get("RTA_OIF"):
        oifs.append(int(msg.get("RTA_OIF")))
    for hop in msg.get("RTA_MULTIPATH") or ():
        if hop.get("oif"):
            oifs.append(int(hop["oif"]))
    key = (msg["family"], msg.get("RTA_PRIORITY"), msg.get("RTA_GATEWAY"), msg["tos"], tuple(oifs))
    return key, tuple(oifs)


class _Kernel:
    """The reader thread's view of one netns; only that thread touches it."""

    def __init__(self, *, read_sysfs: bool) -> None:
        self.read_sysfs = read_sysfs
        self.links: dict[int, Link] = {}
        self.addrs: dict[tuple[int, int, str], _Addr] = {}
        self.routes: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def clear(self) -> None:
        self.links.clear()
        self.addrs.clear()
        self.routes.clear()

    def apply(self, msg: Any) -> None:
        kind = msg["header"]["type"]
        if kind == _RTM_NEWLINK:
            link = _link(msg)
            self.links[link.index] = link
        elif kind == _RTM_DELLINK:
            index = int(msg["index"])
            self.links.pop(index, None)
            # Moved to another netns or deleted: its addresses and routes went with it.
            self.addrs = {k: a for k, a in self.addrs.items() if a.index != index}
            self.routes = {k: o for k, o in self.routes.items() if index not in o}
        elif kind in (_RTM_NEWADDR, _RTM_DELADDR):
            addr = _addr(msg)
            if addr is not None:
                key = (addr.index, addr.family, addr.cidr)
                if kind == _RTM_NEWADDR:
                    self.addrs[key] = addr
                else:
                    self.addrs.pop(key, None)
        elif kind in (_RTM_NEWROUTE, _RTM_DELROUTE):
            route = _default_route(msg)
            if route is not None:
                if kind == _RTM_NEWROUTE:
                    self.routes[route[0]] = route[1]
                else:
                    self.routes.pop(route[0], None)

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
            hw = sysfs.hardware(link.ifname) if self.read_sysfs and not link.kind else None
            links.append(
                replace(
                    link,
                    ipv4=tuple(a.cidr for a in ipv4),
                    ipv6=tuple(a.cidr for a in v6.get(link.index, ())),
                    hw=hw,
                )
            )
        holders = frozenset(i for oifs in self.routes.values() for i in oifs)
        return HostSnapshot(links=tuple(links), default_route_ifindexes=holders)


def _socket(groups: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, _RCVBUF)  # SO_RCVBUFFORCE (CAP_NET_ADMIN)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    sock.bind((0, groups))
    return sock


class Inventory:
    """Host links as ``HostSnapshot``s: one at start, then a new one after each change.

    Use ``async with Inventory(...) as inv`` (or ``start``/``close``), then ``inv.current`` and
    ``async for snapshot in inv.changes()``.
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        debounce_seconds: float = 0.2,
        resync_seconds: float = 300.0,
    ) -> None:
        self.netns = netns
        self.debounce_seconds = debounce_seconds
        self.resync_seconds = resync_seconds
        self._kernel = _Kernel(read_sysfs=netns is None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._latest: HostSnapshot | None = None
        self._error: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._seq = 0
        #: Monotonic time of the newest kernel notification folded into ``current``.
        self.last_event_at = 0.0
        self.full_dumps = 0

    async def __aenter__(self) -> Inventory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> HostSnapshot:
        """Start the reader thread and wait for the first complete snapshot."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="multinet-inventory", daemon=True)
        self._thread.start()
        await self._ready.wait()
        self._raise_if_failed()
        return self.current

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def current(self) -> HostSnapshot:
        self._raise_if_failed()
        if self._latest is None:
            raise InventoryError("the inventory has not read the kernel yet")
        return self._latest

    async def changes(self) -> AsyncIterator[HostSnapshot]:
        """A snapshot after each burst of changes: the first change opens a window of
        ``debounce_seconds``; what arrives within it is folded into one snapshot."""
        while True:
            await self._changed.wait()
            self._raise_if_failed()
            await asyncio.sleep(self.debounce_seconds)
            self._changed.clear()
            yield self.current

    # -- the reader thread -----------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise InventoryError(f"reading host interfaces failed: {self._error}") from self._error

    def _publish(self, snapshot: HostSnapshot | None, error: BaseException | None) -> None:
        # Runs on the event loop (call_soon_threadsafe).
        if error is not None:
            self._error = error
        if snapshot is not None:
            self._latest = snapshot
        self._ready.set()
        self._changed.set()

    def _hand_over(self, error: BaseException | None = None) -> None:
        snapshot = self._kernel.snapshot() if error is None else None
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody listens
            self._loop.call_soon_threadsafe(self._publish, snapshot, error)

    def _run(self) -> None:
        try:
            if self.netns:
                _enter_netns(self.netns)
            events = _socket(_GROUPS | _GROUP_IPV6_ROUTE)
            dumps = _socket(0)
        except OSError as exc:
            log.error("inventory cannot open rtnetlink sockets: %s", exc)
            self._hand_over(exc)
            return
        marshal = MarshalRtnl()
        try:
            self._dump_all(dumps, marshal)
            self._hand_over()
            self._loop_events(events, dumps, marshal)
        except Exception as exc:  # the loop side turns it into InventoryError
            log.exception("inventory thread failed")
            self._hand_over(exc)
        finally:
            events.close()
            dumps.close()

    def _loop_events(self, events: socket.socket, dumps: socket.socket, marshal: Any) -> None:
        events.setblocking(False)
        next_resync = time.monotonic() + self.resync_seconds
        while True:
            timeout = max(0.0, next_resync - time.monotonic())
            readable, _, _ = select.select([events.fileno(), self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                return
            if not readable:
                self._dump_all(dumps, marshal)
                next_resync = time.monotonic() + self.resync_seconds
                self._hand_over()
                continue
            if self._drain(events, dumps, marshal):
                self.last_event_at = time.monotonic()
                self._hand_over()

    def _drain(self, events: socket.socket, dumps: socket.socket, marshal: Any) -> bool:
        """Apply every queued notification; True when something arrived."""
        got = False
        while True:
            try:
                data = events.recv(1 << 20)
            except BlockingIOError:
                return got
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                log.warning("rtnetlink notifications overflowed; reading everything again")
                self._dump_all(dumps, marshal)
                return True
            got = True
            for msg in marshal.parse(data):
                self._kernel.apply(msg)

    def _dump_all(self, sock: socket.socket, marshal: Any) -> None:
        for _ in range(5):  # a dump interrupted by a concurrent change is simply retried
            self._kernel.clear()
            if all(
                self._dump(sock, marshal, kind, body)
                for kind, body in (
                    (_RTM_GETLINK, _GETLINK_BODY),
                    (_RTM_GETADDR, struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)),
                    (
                        _RTM_GETROUTE,
                        struct.pack("=BBBBBBBBI", socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0),
                    ),
                )
            ):
                self.full_dumps += 1
                return
        log.warning("rtnetlink dumps kept being interrupted; using the last one")

    def _dump(self, sock: socket.socket, marshal: Any, kind: int, body: bytes) -> bool:
        """Send one dump request and apply the answer; False when the kernel says it was
        interrupted by a change (NLM_F_DUMP_INTR) and must be repeated."""
        self._seq += 1
        seq = self._seq
        header = struct.pack("=IHHII", 16 + len(body), kind, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
        sock.send(header + body)
        complete = True
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            done = False
            while offset + 16 <= len(data):
                length, mtype, flags, mseq = struct.unpack_from("=IHHI", data, offset)
                if mseq == seq:
                    complete &= not flags & _NLM_F_DUMP_INTR
                    if mtype == _NLMSG_DONE:
                        done = True
                    elif mtype == _NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        raise OSError(code, f"rtnetlink dump {kind}: {os.strerror(code)}")
                offset += (length + 3) & ~3
            for msg in marshal.parse(data):
                if msg["header"]["type"] not in (_NLMSG_DONE, _NLMSG_ERROR):
                    self._kernel.apply(msg)
            if done:
                return complete
