"""RunPodSandbox and Synchronize: execute the checkpointed plans of a pod.

Time budget: the whole hook runs inside the runtime's NRI deadline (~2 s; a late answer
disconnects the plugin and the pod starts unconfigured), and the pod waits for it. So this module
only reads the checkpoint, pins the netns and runs netlink work (all plans of a pod concurrently,
each off the event loop); where each interface went is recorded after the answer (no checkpoint
write on the pod's path; the recovery rule is in multinet.checkpoint). No API reads, no IPAM,
no validation: that all happened in NodePrepareResources. The claim status is written later by
the reporter.

Safe to run twice: a plan already attached to the same pod and netns is not attached again.
Never half-applied: if one plan of a pod fails, the plans that succeeded are detached again,
every interface is back on the host, and the error (naming claim and device) fails the sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from multinet import faults
from multinet.agent import metrics
from multinet.agent.contracts import (
    AttachOutcome,
    EventSink,
    InterfaceMover,
    PodInfo,
    Reporter,
    StateStore,
)
from multinet.agent.pins import NetnsPins, netns_gone
from multinet.devices.facts import to_facts
from multinet.devices.model import Link
from multinet.errors import AttachError
from multinet.kube.events import NoEvents, claim_ref
from multinet.nri import answered
from multinet.plans import Attachment, AttachPlan
from multinet.status import DeviceOutcome

log = logging.getLogger(__name__)


def _attached(plan: AttachPlan, result: AttachOutcome) -> DeviceOutcome:
    return DeviceOutcome(
        plan=plan,
        ready=True,
        interface_name=result.ifname,
        mac=result.mac,
        ips=result.addresses,
        message=f"{result.ifname} configured in the pod",
    )


def _describe(plan: AttachPlan) -> str:
    return f"claim {plan.claim} request {plan.request} device {plan.device}"


def _unknown(device: str) -> Link | None:
    return None


class Attacher:
    """Moves (or creates) the interfaces a pod's claims were prepared with."""

    def __init__(
        self,
        *,
        store: StateStore,
        mover: InterfaceMover,
        reporter: Reporter,
        pins: NetnsPins,
        published: Callable[[str], Link | None] = _unknown,
        events: EventSink | None = None,
    ) -> None:
        self._store = store
        self._pins = pins
        self._mover = mover
        self._reporter = reporter
        # The host link a device name was last published with (an in-memory lookup, cheap
        # enough for the hook). Recorded with a host-device attachment so the device stays
        # advertised while it is in the pod, across agent restarts too.
        self._published = published
        self._events = events or NoEvents()
        # Attachments answered but not yet durable, by plan key, and the writes carrying them.
        self._unrecorded: dict[str, Attachment] = {}
        self._writes: set[asyncio.Task[None]] = set()

    async def run_pod_sandbox(self, pod: PodInfo) -> None:
        plans = self._store.state.plans_for_pod(pod.uid)
        if not plans:
            return
        if not pod.netns:
            names = ", ".join(_describe(p) for p in plans)
            raise AttachError(
                f"pod {pod.ref} uses the host network, so it cannot receive network devices "
                f"({names}); remove hostNetwork or the resource claim"
            )
        todo = [p for p in plans if not self._attached_here(p, pod)]
        if not todo:
            return
        started = time.perf_counter()
        await self._attach_all(pod, todo)
        metrics.ATTACH_SECONDS.observe(time.perf_counter() - started)

    def _attached_here(self, plan: AttachPlan, pod: PodInfo) -> bool:
        current = self._unrecorded.get(plan.key) or self._store.state.attachments.get(plan.key)
        return (
            current is not None
            and current.phase == "attached"
            and current.pod_uid == pod.uid
            and current.netns == pod.netns
        )

    async def _attach_all(self, pod: PodInfo, plans: list[AttachPlan]) -> None:
        """Pin, move, answer; the attachments are recorded after the answer (the recovery rule
        in multinet.checkpoint: a pin without a record is an attach that may have moved)."""
        assert pod.netns
        netns = pod.netns
        links = self._links(plans)
        # Pinned before the move: should we die mid-attach, the netns (and the interface in it)
        # outlives the runtime's teardown, and the pin tells our next run to bring it home.
        for plan in plans:
            self._pins.pin(plan.key, netns)
        results = await self._attach_each(plans, netns)
        if any(isinstance(r, BaseException) for r in results):
            await self._undo(pod, plans, results)
        done = [r for r in results if not isinstance(r, BaseException)]
        faults.crash_point("attach-moved")
        attached = [
            Attachment(
                plan_key=p.key,
                pod_uid=pod.uid,
                pod=pod.ref,
                netns=netns,
                phase="attached",
                pod_ifindex=r.ifindex,
                host=r.host,
                link=links.get(p.key),
            )
            for p, r in zip(plans, done, strict=True)
        ]
        self._reporter.report(pod, [_attached(p, r) for p, r in zip(plans, done, strict=True)])
        self._record_later(pod, plans, attached)

    async def _attach_each(
        self, plans: list[AttachPlan], netns: str
    ) -> list[AttachOutcome | BaseException]:
        """Each plan's outcome or error; several plans concurrently. One plan (the usual pod) is
        awaited here: a task to gather it would cost the pod two more turns of the loop."""
        if len(plans) == 1:
            try:
                return [await self._mover.attach(plans[0], netns)]
            except Exception as exc:
                return [exc]
        return await asyncio.gather(
            *(self._mover.attach(p, netns) for p in plans), return_exceptions=True
        )

    def _record_later(
        self, pod: PodInfo, plans: list[AttachPlan], attached: list[Attachment]
    ) -> None:
        """Log the attach and persist the attachments once the runtime has its answer
        (`nri.answered`; at once outside of an NRI call): neither is the pod's wait, and neither
        should compete with the answer for the loop, the GIL (the write's thread) or a CPU.
        Until the write is durable the attachments are known here (`_unrecorded`); `settle`
        lets Stop and Synchronize wait for it."""
        for att in attached:
            self._unrecorded[att.plan_key] = att
        answer = answered()

        async def write() -> None:
            try:
                await answer
                log.info(
                    "attached %d interface(s)",
                    len(plans),
                    extra={"pod": pod.ref, "podUID": pod.uid, "devices": [p.device for p in plans]},
                )
                await self._store.record(attached)
            finally:
                for att in attached:
                    if self._unrecorded.get(att.plan_key) is att:
                        del self._unrecorded[att.plan_key]

        task = asyncio.get_running_loop().create_task(write(), name=f"record {pod.ref}")
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The interfaces stay attached; the pins still mark them for the next run.
            log.error("recording attachments failed: %s", exc)

    async def settle(self) -> None:
        """Wait until every attachment recorded after its answer is on disk (or failed)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def _undo(
        self,
        pod: PodInfo,
        plans: list[AttachPlan],
        results: list[AttachOutcome | BaseException],
    ) -> NoReturn:
        """Some plans failed: detach those that succeeded, forget them all, fail the sandbox."""
        pairs = list(zip(plans, results, strict=True))
        failures = [(p, r) for p, r in pairs if isinstance(r, BaseException)]
        await self._roll_back(pod, [p for p, r in pairs if not isinstance(r, BaseException)])
        recorded = [p.key for p in plans if p.key in self._store.state.attachments]
        if recorded:  # from an earlier attach of these plans; this one recorded nothing
            await self._store.forget(recorded)
        for plan in plans:
            self._pins.unpin(plan.key)
        metrics.ATTACH_ERRORS.inc(len(failures))
        outcomes = [
            DeviceOutcome(plan=p, ready=False, reason="AttachFailed", message=str(err))
            for p, err in failures
        ]
        self._reporter.report(pod, outcomes)
        detail = "; ".join(f"{_describe(p)}: {err}" for p, err in failures)
        raise AttachError(f"pod {pod.ref}: {detail}")

    def _links(self, plans: list[AttachPlan]) -> dict[str, dict[str, Any]]:
        """Published facts of the host-device NICs about to leave the host, by plan key."""
        links: dict[str, dict[str, Any]] = {}
        for plan in plans:
            if not plan.moves_nic:
                continue  # a macvlan parent (or a sharing CNI chain's NIC) stays on the host
            link = self._published(plan.device)
            if link is not None:
                links[plan.key] = to_facts(link)
        return links

    async def _roll_back(self, pod: PodInfo, attached: list[AttachPlan]) -> None:
        assert pod.netns
        results = await asyncio.gather(
            *(self._mover.detach(p, pod.netns, None) for p in attached), return_exceptions=True
        )
        for plan, result in zip(attached, results, strict=True):
            if isinstance(result, BaseException):
                metrics.RESTORE_ERRORS.inc()
                log.error(
                    "rolling back %s failed: %s",
                    _describe(plan),
                    result,
                    extra={"pod": pod.ref, "podUID": pod.uid},
                )

    async def _check(self, live: dict[str, PodInfo]) -> None:
        """CHECK the attachments of running pods whose mode can say (CNI chains). A failed CHECK
        is a Warning Event on the claim, not a change of its Ready condition: several common
        plugins' CHECK reports working attachments as broken (bridge once ports came and went,
        anything before sbr, portmap before 1.3 on IPv4-only pods)."""
        for key, att in list(self._store.state.attachments.items()):
            plan = self._store.plan(key)
            pod = live.get(att.pod_uid)
            if plan is None or pod is None or att.phase != "attached" or plan.mode != "cni":
                continue
            try:
                await self._mover.check(plan)
            except AttachError as exc:
                log.warning("check failed: %s", exc, extra={"pod": pod.ref, "podUID": pod.uid})
                self._events.post(
                    claim_ref(plan.claim.namespace, plan.claim.name, plan.claim.uid),
                    "Warning",
                    "CNICheckFailed",
                    f"device {plan.device} in pod {pod.ref}: {exc}; the interface stays as "
                    "attached (set disableCheck in the CNI config when a plugin's CHECK is "
                    "known to misreport)",
                )

    async def synchronize(self, pods: Iterable[PodInfo]) -> None:
        """After a (re)connect, once the releaser has dealt with pods that went away.

        - attachments left "attaching" by a crash: roll back, then attach again.
        - attachments of running pods: pin their netns again (a restarted agent holds none).
        - pods with plans but no attachment (the agent was down when they started): attach now.
        - CNI attachments of running pods: CHECK (a failure is a Warning Event on the claim).
        """
        await self.settle()
        live = {p.uid: p for p in pods}
        # Pins of plans no claim holds any more (adopt_unrecorded took the others).
        self._pins.prune([*self._store.state.attachments, *self._unrecorded])
        for key, att in list(self._store.state.attachments.items()):
            plan = self._store.plan(key)
            if plan is None:
                await self._store.forget([key])
                self._pins.unpin(key)
            elif att.phase != "attached":
                await self._mover.detach(plan, self._pins.path(key, att.netns), att.host)
                await self._store.forget([key])
                self._pins.unpin(key)
            else:
                self._pins.pin(key, att.netns)
        await self._check(live)
        for pod in live.values():
            # A stopped sandbox is still listed, its netns already gone: nothing to attach to.
            if pod.netns and not netns_gone(pod.netns) and self._store.state.plans_for_pod(pod.uid):
                try:
                    await self.run_pod_sandbox(pod)
                except AttachError as exc:
                    log.error(
                        "late attach failed: %s", exc, extra={"pod": pod.ref, "podUID": pod.uid}
                    )
