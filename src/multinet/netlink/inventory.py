"""The host's links, addresses and default routes, kept current from rtnetlink notifications.

Default routes: the interfaces a main-table default route (IPv4 or IPv6) leaves through, from its
output interface, its multipath hops, or, for a route through a nexthop object (``nhid``), that
object or the members of that group. The nexthop objects are read and followed too, because with
``net.ipv4.nexthop_compat_mode=0`` such a route carries nothing but RTA_NH_ID, and the kernel
then says nothing about routes when a nexthop object changes. Route and nexthop messages are
decoded by hand (pyroute2 has no nexthop message class and drops RTA_NH_ID); links and addresses
go through pyroute2. This module owns the sockets and the thread; turning messages into state is
the pure `kernelview` module.

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
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from multinet.devices.model import HostSnapshot
from multinet.errors import MultinetError
from multinet.netlink import netns, sysfs
from multinet.netlink.kernelview import (
    BY_HAND,
    NHMSG,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEXTHOP,
    RTM_GETROUTE,
    RTMSG,
    KernelView,
)

log = logging.getLogger(__name__)

_NETLINK_ROUTE = 0
_GROUPS = 0x1 | 0x10 | 0x40 | 0x100  # RTMGRP_LINK | IPV4_IFADDR | IPV4_ROUTE | IPV6_IFADDR
_GROUP_IPV6_ROUTE = 0x400
_GROUP_NEXTHOP = 1 << 31  # RTNLGRP_NEXTHOP = 32
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_NO_NEXTHOPS = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.EAFNOSUPPORT})
_RCVBUF = 8 << 20
# ifinfomsg, then IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS: the kernel leaves out the per-link
# counters (IFLA_STATS/STATS64, a large share of every message) that we would decode for nothing.
_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS = 29, 1 << 3
_GETLINK_BODY = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + struct.pack(
    "=HHI", 8, _IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS
)


class InventoryError(MultinetError):
    """The inventory thread could not read the kernel's interfaces."""


def _enter_netns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        netns.setns(fd, f" into netns {name}")
    finally:
        os.close(fd)


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
        self._kernel = KernelView(hardware=sysfs.hardware if netns is None else None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._latest: HostSnapshot | None = None
        self._error: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._seq = 0

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
            events = _socket(_GROUPS | _GROUP_IPV6_ROUTE | _GROUP_NEXTHOP)
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
            self._apply(data, marshal)

    def _apply(self, data: bytes, marshal: Any) -> None:
        """Apply the messages of one datagram in order: routes and nexthop objects decoded by
        hand, runs of the others (links, addresses) by pyroute2; DONE/ERROR are skipped."""
        start = offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            step = (length + 3) & ~3
            if kind in BY_HAND or kind in (_NLMSG_DONE, _NLMSG_ERROR):
                self._apply_parsed(data[start:offset], marshal)
                if kind in BY_HAND:
                    self._kernel.apply_raw(kind, data[offset + 16 : offset + length])
                start = offset + step
            offset += step
        self._apply_parsed(data[start:], marshal)

    def _apply_parsed(self, data: bytes, marshal: Any) -> None:
        if data:
            for msg in marshal.parse(data):
                if msg["header"]["type"] not in (_NLMSG_DONE, _NLMSG_ERROR):
                    self._kernel.apply(msg)

    def _dump_all(self, sock: socket.socket, marshal: Any) -> None:
        for _ in range(5):  # a dump interrupted by a concurrent change is simply retried
            self._kernel.clear()
            if all(
                self._dump(sock, marshal, kind, body)
                for kind, body in (
                    (RTM_GETLINK, _GETLINK_BODY),
                    (RTM_GETADDR, struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)),
                    (
                        RTM_GETNEXTHOP,
                        NHMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                    ),
                    (
                        RTM_GETROUTE,
                        RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0),
                    ),
                )
            ):
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
                        if kind == RTM_GETNEXTHOP and code in _NO_NEXTHOPS:
                            done = True  # a kernel without nexthop objects: there are none
                        else:
                            raise OSError(code, f"rtnetlink dump {kind}: {os.strerror(code)}")
                offset += (length + 3) & ~3
            self._apply(data, marshal)
            if done:
                return complete
