"""The asyncio face of attach/detach: blocking netlink work on a pool of worker threads.

Why threads: a netns move holds the calling thread for ~16 ms (p99 ~40 ms) of kernel time. Run on
the event loop, that would stall NRI, gRPC and the API watches; run one at a time, a burst of pods
would queue behind each other's kernel time and miss the ~2 s NRI deadline. Each worker thread
keeps its own host netlink socket (see `netns.host()`), so threads never share a socket.

Work on the same plan is serialised (an attach racing its own detach would interleave moves);
different plans, even of the same pod, run in parallel.

`NetlinkMover` fits the agent's `InterfaceMover` port.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from multinet import plans
from multinet.keyedlocks import KeyedLocks
from multinet.netlink import attach as attaching
from multinet.netlink import restore

T = TypeVar("T")

# Enough for a burst of pod starts: the kernel serialises moves on its RTNL lock anyway, so more
# threads than this only add memory; fewer would make short requests wait behind moves.
DEFAULT_WORKERS = 16


class NetlinkMover:
    """Runs attach plans off the event loop. Create one per process; `close()` at shutdown."""

    def __init__(self, *, workers: int = DEFAULT_WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netlink")
        self._serial = KeyedLocks()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def attach(self, plan: plans.AttachPlan, netns: str) -> attaching.AttachResult:
        """Raises AttachError (the interface is back on the host)."""
        async with self._serial.hold(plan.key):
            return await self._run(attaching.attach, plan, netns)

    async def detach(
        self, plan: plans.AttachPlan, netns: str, host: plans.HostState | None = None
    ) -> None:
        """Raises RestoreError listing what could not be restored."""
        async with self._serial.hold(plan.key):
            await self._run(functools.partial(restore.detach, host=host), plan, netns)

    async def recover(self, plan: plans.AttachPlan, attachment: plans.Attachment) -> str:
        """The pod's netns is gone: restore what came back; returns a `Recovery` value."""
        return (await self.recover_plan(plan, attachment.host)).value

    async def recover_plan(
        self, plan: plans.AttachPlan, host: plans.HostState | None = None
    ) -> restore.Recovery:
        """Raises RestoreError when the NIC is back but could not be restored."""
        async with self._serial.hold(plan.key):
            fn = functools.partial(restore.recover_from_dead_netns, host=host)
            result: restore.Recovery = await self._run(fn, plan)
            return result

    async def check(self, plan: plans.AttachPlan) -> None:
        """Nothing to check: a moved NIC or a macvlan child is watched by the inventory."""

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)
