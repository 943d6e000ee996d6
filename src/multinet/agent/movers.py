"""The agent's InterfaceMover: each plan goes to the adapter of its mode.

host-device and macvlan plans are netlink work (`netlink.executor.NetlinkMover`); `mode: cni`
plans run the network's CNI chain (`cni.mover.CniMover`). Work on one plan is serialised in
either case (an ADD racing its own DEL would leave the chain half torn down).
"""

from __future__ import annotations

from multinet import plans
from multinet.agent.contracts import AttachOutcome
from multinet.cni.mover import CniMover
from multinet.keyedlocks import KeyedLocks
from multinet.netlink.executor import NetlinkMover


class ModeMover:
    def __init__(self, netlink: NetlinkMover, cni: CniMover) -> None:
        self._netlink = netlink
        self._cni = cni
        self._serial = KeyedLocks()

    async def attach(self, plan: plans.AttachPlan, netns: str) -> AttachOutcome:
        if plan.mode != "cni":
            return await self._netlink.attach(plan, netns)
        async with self._serial.hold(plan.key):
            return await self._cni.attach(plan, netns)

    async def detach(
        self, plan: plans.AttachPlan, netns: str, host: plans.HostState | None = None
    ) -> None:
        if plan.mode != "cni":
            await self._netlink.detach(plan, netns, host)
            return
        async with self._serial.hold(plan.key):
            await self._cni.detach(plan, netns, host)

    async def recover(self, plan: plans.AttachPlan, attachment: plans.Attachment) -> str:
        if plan.mode != "cni":
            return await self._netlink.recover(plan, attachment)
        async with self._serial.hold(plan.key):
            return await self._cni.recover(plan, attachment.host)

    async def check(self, plan: plans.AttachPlan) -> None:
        """CHECK a CNI attachment (CniError when broken); other modes have nothing to check."""
        if plan.mode == "cni":
            async with self._serial.hold(plan.key):
                await self._cni.check(plan)

    def close(self) -> None:
        self._netlink.close()
