"""Read-only: how a host interface looks now, as the `HostState` a restore puts back.

Used while preparing a claim (slow work is allowed there): the plan records the interface's
name, index, MTU, MAC, link state, addresses and routes before anything moves. It is the same
reader the attach path uses just before a move (`restore.read_host_state`), so prepare-time and
attach-time records can never disagree on what "the host state" means. Netlink calls block, so
`read_host_state` runs them in a worker thread.
"""

from __future__ import annotations

import asyncio

from multinet.errors import ClaimError
from multinet.netlink import restore
from multinet.netlink.rtnl import Rtnl, RtnlError
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
            return restore.read_host_state(rt, link)
    except RtnlError as exc:
        raise ClaimError(f"cannot read interface {ifname} from the host: {exc}") from exc
