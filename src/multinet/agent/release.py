"""StopPodSandbox and RemovePodSandbox: give every interface back to the host as it was.

Time budget: StopPodSandbox runs inside the NRI deadline too, but it is the last moment the
pod's netns exists (CNI teardown follows), so it moves interfaces back right away, all of a
pod's devices concurrently. RemovePodSandbox arrives after the netns is gone and only cleans
up what Stop could not (the runtime only logs errors from either, so they never block pod
shutdown: every failure is logged and counted instead of raised).

Safe to run twice: an attachment is forgotten once its interface is back, so a repeated
Stop or a Remove after a good Stop finds nothing to do. Every path that gives an interface back
(Stop, Remove, recovery, a take-back for the next claim) holds the attachment's lock, so two of
them never move one NIC at once.

Nothing forgotten too early: an attachment record (what the host NIC must be restored to) is
dropped only once the interface is proven home or proven gone. A recovery that fails keeps the
record and the claim prepared (unprepare refuses while it is there), is retried with backoff,
counted in `multinet_agent_recovery_failures` and told on the claim as a Warning Event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

from multinet import faults
from multinet.agent import metrics
from multinet.agent.contracts import EventSink, InterfaceMover, PodInfo, StateStore
from multinet.agent.pins import NetnsPins, netns_gone
from multinet.kube.events import NoEvents, claim_ref
from multinet.plans import Attachment, AttachPlan

log = logging.getLogger(__name__)

#: Recovery retries: first after this many seconds, doubling up to the cap.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


def host_devices_in_pods(store: StateStore) -> Iterator[tuple[AttachPlan, Attachment]]:
    """Host NICs currently inside pods, with their attachments: host-device plans and CNI
    chains that move the NIC itself (a macvlan parent never leaves the host)."""
    for key, attachment in store.state.attachments.items():
        plan = store.plan(key)
        if plan is not None and plan.moves_nic:
            yield plan, attachment


class Releaser:
    def __init__(
        self,
        *,
        store: StateStore,
        mover: InterfaceMover,
        pins: NetnsPins,
        events: EventSink | None = None,
        retry_first_seconds: float = RETRY_FIRST_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
    ) -> None:
        self._store = store
        self._mover = mover
        self._pins = pins
        self._events: EventSink = events or NoEvents()
        self._locks: dict[str, asyncio.Lock] = {}
        self._retry_first = retry_first_seconds
        self._retry_max = retry_max_seconds
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._settle: Callable[[], Awaitable[None]] = _nothing_pending

    def wait_for_records(self, settle: Callable[[], Awaitable[None]]) -> None:
        """`settle` waits for attachments recorded after their hook answered (the Attacher's);
        every path here that reads attachments waits for it first."""
        self._settle = settle

    @contextlib.asynccontextmanager
    async def _holding(self, key: str) -> AsyncIterator[bool]:
        """The attachment's lock; yields whether the attachment is still recorded."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield key in self._store.state.attachments
        finally:
            if not lock.locked() and key not in self._store.state.attachments:
                self._locks.pop(key, None)

    def _attachments(self, pod: PodInfo) -> list[str]:
        return [k for k, a in self._store.state.attachments.items() if a.pod_uid == pod.uid]

    async def stop_pod_sandbox(self, pod: PodInfo) -> None:
        await self._settle()  # an attach answered moments ago may still be recording
        # An attach whose record could not be written (a failed checkpoint write) left its pin.
        await self.adopt_unrecorded(p.key for p in self._store.state.plans_for_pod(pod.uid))
        keys = self._attachments(pod)
        if not keys:
            return
        results = await asyncio.gather(*(self._give_back(k) for k in keys), return_exceptions=True)
        done = sum(1 for r in results if r is True)
        log.info(
            "returned %d of %d interface(s) to the host",
            done,
            len(keys),
            extra={"pod": pod.ref, "podUID": pod.uid},
        )

    async def _give_back(self, key: str) -> bool:
        """Detach and forget under the attachment's lock; True when it is home (or was)."""
        async with self._holding(key) as recorded:
            if not recorded:
                return True  # another path brought it home meanwhile
            if await self._detach(key):
                faults.crash_point("detach-moved")
                await self._store.forget([key])
                return True
            return False

    async def _detach(self, key: str) -> bool:
        att = self._store.state.attachments[key]
        plan = self._store.plan(key)
        if plan is None:
            self._pins.unpin(key)
            return True
        try:
            await self._mover.detach(plan, self._pins.path(key, att.netns), att.host)
        except Exception as exc:  # best-effort: RemovePodSandbox retries through recover()
            metrics.RESTORE_ERRORS.inc()
            log.error(
                "returning %s to the host failed: %s",
                plan.device,
                exc,
                extra={"pod": att.pod, "podUID": att.pod_uid, "claim": str(plan.claim)},
            )
            return False
        self._pins.unpin(key)
        return True

    # -- the next claim of a device ---------------------------------------------------------

    async def holding(self, device: str, *, other_than: str) -> dict[str, AttachPlan]:
        """Attachment keys (with their plans) that keep host-device `device` in a pod for a
        claim other than the one with UID `other_than`."""
        await self._settle()
        return {
            plan.key: plan
            for plan, _ in host_devices_in_pods(self._store)
            if plan.device == device and plan.claim.uid != other_than
        }

    async def take_back(self, keys: Iterable[str]) -> None:
        """Bring these interfaces home now, for the next claim of their device.

        The caller has established that the claims of these attachments no longer hold the
        device (the scheduler already gave it to another claim): their pods are being torn down
        and a StopPodSandbox may still be on its way. Waiting for it would fail or stall the next
        pod's prepare; the agent holds the old pod's netns (its path or our pin), so it moves the
        NIC home at once. A netns already gone falls back to recovery from the host.
        """
        await self._settle()
        for key in keys:
            async with self._holding(key) as recorded:
                if not recorded:
                    continue
                att = self._store.state.attachments[key]
                reachable = self._pins.pinned(key) or not netns_gone(att.netns)
                if reachable and await self._detach(key):
                    await self._store.forget([key])
                    log.info(
                        "took the interface back from a pod whose claim no longer holds it",
                        extra={"pod": att.pod, "podUID": att.pod_uid, "attachment": key},
                    )
                    continue
            await self._recover([key])

    # -- pods that went away without a Stop we could act on ---------------------------------

    async def release_vanished(self, pods: Iterable[PodInfo]) -> None:
        """On (re)connect: attachments of pods that no longer run, or whose netns was replaced
        or removed while we were not listening, are recovered."""
        await self._settle()
        live = {p.uid: p for p in pods}
        await self._recover(
            [
                key
                for key, att in self._store.state.attachments.items()
                if (pod := live.get(att.pod_uid)) is None
                or pod.netns != att.netns
                or netns_gone(att.netns)
            ]
        )

    async def remove_pod_sandbox(self, pod: PodInfo) -> None:
        """The netns is gone: whatever is still recorded for the pod is recovered or reported."""
        await self._settle()
        await self._recover(self._attachments(pod))

    async def adopt_unrecorded(self, keys: Iterable[str] | None = None) -> None:
        """The crash-recovery rule of attaching (see multinet.checkpoint): the hook pins the pod's
        netns before it moves anything and records the attachment only after answering, so a
        pinned plan without a recorded attachment may have an interface in that netns. Record it
        as "attaching" with the pin as its netns: no live pod has that netns, so the usual
        recovery brings the interface home through the pin (or finds it already there), and a
        pod still running gets it attached again by Synchronize."""
        await self._settle()
        wanted = None if keys is None else set(keys)
        recorded = self._store.state.attachments
        found = [
            Attachment(
                plan_key=plan.key,
                pod_uid=claim.pod_uids[0] if claim.pod_uids else "",
                pod=f"pod of claim {claim.claim}",
                netns=self._pins.file(plan.key),
                phase="attaching",
            )
            for claim in self._store.state.claims.values()
            for plan in claim.plans
            if (wanted is None or plan.key in wanted)
            and plan.key not in recorded
            and self._pins.pinned(plan.key)
        ]
        if found:
            log.warning(
                "found %d interface(s) whose attach was not recorded before the agent stopped; "
                "bringing them home through their pins",
                len(found),
                extra={"attachments": [a.plan_key for a in found]},
            )
            await self._store.record(found)

    async def reclaim_orphans(self, keys: Iterable[str]) -> None:
        """Recover attachments whose pod netns no longer exists.

        The agent can miss StopPodSandbox (it was restarted, or containerd was) and the sandbox
        may then be torn down before any Remove reaches us; NodeUnprepareResources calls this so
        such a claim is released instead of waiting forever for an interface that is not coming.
        """
        keys = list(keys)
        await self.adopt_unrecorded(keys)
        attachments = self._store.state.attachments
        await self._recover(
            [
                k
                for k in keys
                if k in attachments
                # adopted just now: the pod is gone (it is being unprepared), the pin holds it
                and (netns_gone(attachments[k].netns) or attachments[k].phase == "attaching")
            ]
        )

    async def _recover(self, keys: list[str]) -> None:
        for key in keys:
            if not await self._recover_one(key):
                self._retry_later(key)

    async def _recover_one(self, key: str) -> bool:
        """The pod is gone or going without a Stop we could act on. Through our pin the netns
        may still hold the interface: move it back from there; otherwise look for it on the
        host (a physical NIC falls back under its pod-side name) or prove it gone. True when
        the record is settled (home, gone, or nothing to restore) and dropped."""
        async with self._holding(key) as recorded:
            if not recorded:
                return True
            att = self._store.state.attachments[key]
            plan = self._store.plan(key)
            if plan is not None:
                if self._pins.pinned(key) and await self._detach(key):
                    outcome = "returned to the host from the pod's netns, held open by the agent"
                else:
                    try:
                        outcome = await self._mover.recover(plan, att)
                    except Exception as exc:
                        self._recovery_failed(key, plan, att.pod, exc)
                        return False
                log.warning(
                    "the pod's sandbox went away without a StopPodSandbox we could act on: %s",
                    outcome,
                    extra={"pod": att.pod, "podUID": att.pod_uid, "device": plan.device},
                )
            self._pins.unpin(key)
            await self._store.forget([key])
            return True

    def _recovery_failed(self, key: str, plan: AttachPlan, pod: str, exc: Exception) -> None:
        metrics.RESTORE_ERRORS.inc()
        metrics.RECOVERY_FAILURES.inc()
        first = key not in self._retries
        log.error(
            "recovering %s failed, keeping its restore record and retrying: %s",
            plan.device,
            exc,
            extra={"pod": pod, "claim": str(plan.claim), "attachment": key},
        )
        if first:  # one Event per failing streak, not one per retry
            self._events.post(
                claim_ref(plan.claim.namespace, plan.claim.name, plan.claim.uid),
                "Warning",
                "InterfaceRecoveryFailed",
                f"device {plan.device} ({plan.host_ifname}) of pod {pod} could not be given back "
                f"to the host: {exc}; the agent keeps its record and the claim prepared and "
                "retries with backoff",
            )

    def _retry_later(self, key: str) -> None:
        if key in self._retries and not self._retries[key].done():
            return
        self._retries[key] = asyncio.get_running_loop().create_task(
            self._retry(key), name=f"recover {key}"
        )
        metrics.RECOVERIES_PENDING.set(len(self._retries))

    async def _retry(self, key: str) -> None:
        delay = self._retry_first
        try:
            while True:
                await asyncio.sleep(delay)
                if await self._recover_one(key):
                    log.info("recovered after retrying", extra={"attachment": key})
                    return
                delay = min(delay * 2, self._retry_max)
        finally:
            self._retries.pop(key, None)
            metrics.RECOVERIES_PENDING.set(len(self._retries))

    async def close(self) -> None:
        """Stop retrying (shutdown): the records stay in the checkpoint for the next run."""
        tasks = list(self._retries.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _nothing_pending() -> None:
    """No attach records outstanding (a Releaser without an Attacher)."""
