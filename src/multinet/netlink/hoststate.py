"""Read-only: how a host interface looks now, as the `HostState` a restore puts back.

Used while preparing a claim (slow work is allowed there): the plan records the interface's
name, index, MTU, MAC, link state, addresses and routes before anything moves. It is the same
reader the attach path uses just before a move (`read_link`), so prepare-time and attach-time
records can never disagree on what "the host state" means; restore compares the kernel's view with
the record through the same `as_address`/`as_route`/`kernel_made`. Netlink calls block, so
`read_host_state` runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os

from multinet import plans
from multinet.errors import ClaimError
from multinet.netlink import codec, steps
from multinet.netlink.rtnl import Address, Link, RouteEntry, Rtnl, RtnlError
from multinet.plans import HostState


class InterfaceNotFound(ClaimError):
    """The interface a device stands for is not on the host (gone, renamed, or in a pod)."""


async def read_host_state(ifname: str) -> HostState:
    return await asyncio.to_thread(read_host_state_sync, ifname)


def read_host_state_sync(ifname: str) -> HostState:
    """Blocking variant, for worker threads."""
    try:
        with Rtnl() as rt:
            link = rt.get_link(name=ifname)
            if link is None:
                raise InterfaceNotFound(f"interface {ifname} is not on the host")
            return read_link(rt, link)
    except RtnlError as exc:
        raise ClaimError(f"cannot read interface {ifname} from the host: {exc}") from exc


def read_link(rt: Rtnl, link: Link) -> plans.HostState:
    """The host-side state of `link` in the form the checkpoint keeps and restore puts back."""
    addrs = [a for a in rt.addresses(link.index) if not kernel_made(a, link.mac)]
    routes = rt.routes(link.index) if link.up else []
    master = rt.get_link(index=link.master) if link.master else None
    return plans.HostState(
        ifname=link.name,
        ifindex=link.index,
        mtu=link.mtu,
        mac=steps.normalize_mac(link.mac),
        up=link.up,
        addresses=tuple(a.cidr for a in addrs),
        routes=tuple(as_route(r, link.index) for r in routes),
        broadcasts=tuple((a.cidr, a.broadcast) for a in addrs if a.broadcast),
        address_details=tuple(as_address(a, link.name) for a in addrs),
        master=link.master or None,
        master_name=master.name if master is not None else None,
        addr_gen_mode=link.addr_gen_mode,
    )


def kernel_made(addr: Address, mac: str) -> bool:
    """Whether the kernel made `addr` itself and makes it again when the link comes up (or a
    router advertises a prefix): restoring it by hand would duplicate or pin the kernel's own.
    Since Linux 6.3 the kernel says so (IFA_PROTO); before, a link-local address derived from the
    MAC (EUI-64, the default address generation mode) is taken to be the kernel's."""
    if addr.proto in _KERNEL_ADDRESS_ORIGINS:
        return True
    iface = ipaddress.ip_interface(addr.cidr)
    if iface.version != 6:
        return False
    if addr.flags & codec.IFA_F_TEMPORARY:  # an IPv6 privacy address
        return True
    return not _KERNEL_TAGS_ADDRESSES and iface == _eui64_link_local(mac)


def as_route(entry: RouteEntry, index: int) -> plans.HostRoute:
    """A route as the checkpoint keeps it; a path through the NIC itself is recorded as such
    (its index may differ once the NIC is back)."""
    return plans.HostRoute(
        destination=entry.destination,
        gateway=entry.gateway,
        metric=entry.metric,
        protocol=entry.protocol,
        source=entry.source,
        table=entry.table,
        type=entry.type,
        scope=entry.scope,
        tos=entry.tos,
        onlink=bool(entry.flags & codec.RTNH_F_ONLINK),
        pref=entry.pref,
        metrics=entry.metrics,
        nexthops=tuple(
            plans.HostNextHop(
                gateway=h.gateway,
                ifindex=None if h.ifindex == index else h.ifindex,
                weight=h.weight,
                onlink=bool(h.flags & codec.RTNH_F_ONLINK),
            )
            for h in entry.nexthops
        ),
    )


def as_address(addr: Address, ifname: str) -> plans.HostAddress:
    return plans.HostAddress(
        cidr=addr.cidr,
        broadcast=addr.broadcast,
        flags=addr.flags & codec.IFA_F_USER,
        # The kernel reports the interface's name as every IPv4 address's label; only another
        # one (an alias such as "eth0:1") was set by someone, and a rename keeps it relative.
        label=addr.label if addr.label and addr.label != ifname else None,
        scope=addr.scope,
        proto=addr.proto,
    )


def _eui64_link_local(mac: str) -> ipaddress.IPv6Interface | None:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        return None
    eui = bytes([raw[0] ^ 0x02]) + raw[1:3] + b"\xff\xfe" + raw[3:]
    return ipaddress.IPv6Interface((b"\xfe\x80" + bytes(6) + eui, 64))


def _kernel_tags_addresses() -> bool:
    """Whether this kernel marks the addresses it makes (IFA_PROTO, Linux 6.3 and later)."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 3)


_KERNEL_TAGS_ADDRESSES = _kernel_tags_addresses()
_KERNEL_ADDRESS_ORIGINS = {
    codec.IFAPROT_KERNEL_LO,
    codec.IFAPROT_KERNEL_RA,
    codec.IFAPROT_KERNEL_LL,
}
