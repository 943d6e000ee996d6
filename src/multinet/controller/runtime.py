"""The controller's runtime: two watches feed a work queue; periodic jobs run beside it.

The watches (``kube.watching``, the same list/watch loop as the node agent's) only put names on the
``WorkQueue``; the single worker reconciles by re-reading the object, so what is written, and to
which PodNetwork, is decided solely by ``reconcile``, and foreign PodNetworks stay exactly as their
owners left them. A PodNetwork event queues that network; any ResourceClaim event re-checks the
networks whose deletion waits for claims. A third watch, on our driver's ResourceSlices, keeps
what they show of shared NICs (one small ``sharing.SliceView`` per slice, not the slice) and
queues the networks whose part of a slice changed, for their ``Sharing`` condition.

Periodic work runs beside the queue as ``Periodic`` loops: the deleting-network re-check and the
full resync are two; the IP-reservation garbage collector (pool IPAM) plugs in as another one
through ``Controller(extra=[...])``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from multinet.api import podnetwork
from multinet.controller import sharing
from multinet.controller.reconcile import Reconciler, Result
from multinet.controller.workqueue import WorkQueue
from multinet.kube.controllerapi import PODNETWORKS, RESOURCECLAIMS, RESOURCESLICES, Kube

log = logging.getLogger(__name__)

#: Slice events come in bursts (an agent rewrites all its slices at once): gather them.
SLICE_EVENT_DELAY = 1.0


@dataclasses.dataclass(frozen=True)
class Periodic:
    """A named background job run every ``interval`` seconds; a failure is logged, not fatal."""

    name: str
    interval: float
    run: Callable[[], Awaitable[object]]


class Controller:
    def __init__(
        self,
        kube: Kube,
        *,
        recheck_interval: float = 10.0,
        resync_interval: float = 300.0,
        extra: Sequence[Periodic] = (),
        watch_timeout_seconds: int = 300,
    ) -> None:
        self.kube = kube
        self.reconciler = Reconciler(kube, slice_views=self.slice_views)
        self.queue = WorkQueue(self._reconcile)
        self.deleting: set[str] = set()
        #: PodNetworks of ours seen by the watch (queued again once the slices are listed).
        self.networks: set[str] = set()
        #: Slice name -> what it shows of shared NICs; None until the slices were listed.
        self.views: dict[str, sharing.SliceView] | None = None
        self.recheck_interval = recheck_interval
        # The server ends each watch after this long; the re-list then is the safety net.
        self.watch_timeout_seconds = watch_timeout_seconds
        self.periodic = [
            Periodic("resync", resync_interval, self.resync),
            *extra,
        ]

    async def _reconcile(self, name: str) -> None:
        result = await self.reconciler.reconcile(name)
        if result is Result.HELD:
            self.deleting.add(name)
            self.queue.add(name, self.recheck_interval)  # claims may go without us seeing it
        else:
            self.deleting.discard(name)

    # --- event sources ----------------------------------------------------------------------

    def podnetwork_event(self, event_type: str, body: dict[str, Any]) -> None:
        name = (body.get("metadata") or {}).get("name")
        if not name or not podnetwork.is_ours((body.get("spec") or {}).get("provider")):
            return
        if event_type == "DELETED":
            self.deleting.discard(name)
            self.networks.discard(name)
            return
        self.networks.add(name)
        self.queue.add(name)

    def claim_event(self) -> None:
        """Any claim change may release a deleting network; re-check those (cheap: usually none)."""
        for name in self.deleting:
            self.queue.add(name, 0.2)  # a short delay coalesces a burst of claim events

    def slice_views(self) -> list[sharing.SliceView] | None:
        return None if self.views is None else list(self.views.values())

    def slices_listed(self, items: list[dict[str, Any]]) -> None:
        old = self.views
        self.views = {}
        for body in items:
            found = sharing.view(body)
            if found is not None:
                self.views[_name(body)] = found
        if old is None:  # the first list: every network's Sharing can be decided now
            changed = set(self.networks)
        else:
            changed = set()
            for name in set(old) | set(self.views):
                changed |= sharing.networks_changed(old.get(name), self.views.get(name))
        for network in changed:
            self.queue.add(network, SLICE_EVENT_DELAY)

    def slice_event(self, event_type: str, body: dict[str, Any]) -> None:
        """Keep the view of one slice; queue the networks whose part of it changed."""
        if self.views is None:
            return
        new = None if event_type == "DELETED" else sharing.view(body)
        old = self.views.pop(_name(body), None)
        if new is not None:
            self.views[_name(body)] = new
        for network in sharing.networks_changed(old, new):
            self.queue.add(network, SLICE_EVENT_DELAY)

    async def resync(self) -> None:
        """Safety net for anything a watch missed: queue every PodNetwork of ours."""
        for body in await self.kube.list_podnetworks():
            self.podnetwork_event("RESYNC", body)

    # --- running -----------------------------------------------------------------------------

    def claims_listed(self, items: list[dict[str, Any]]) -> None:
        self.claim_event()

    def podnetworks_listed(self, items: list[dict[str, Any]]) -> None:
        for body in items:
            self.podnetwork_event("LISTED", body)

    async def run(self) -> None:
        """Watches, queue and periodic jobs until cancelled; a crash of any ends them all."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.queue.run(), name="reconcile-queue")
            tg.create_task(
                self.kube.watch(
                    PODNETWORKS,
                    on_list=self.podnetworks_listed,
                    on_event=self.podnetwork_event,
                    timeout_seconds=self.watch_timeout_seconds,
                ),
                name="watch-podnetworks",
            )
            tg.create_task(
                self.kube.watch(
                    RESOURCECLAIMS,
                    on_list=self.claims_listed,
                    on_event=lambda _type, _claim: self.claim_event(),
                    timeout_seconds=self.watch_timeout_seconds,
                ),
                name="watch-resourceclaims",
            )
            tg.create_task(
                self.kube.watch(
                    RESOURCESLICES,
                    on_list=self.slices_listed,
                    on_event=self.slice_event,
                    timeout_seconds=self.watch_timeout_seconds,
                ),
                name="watch-resourceslices",
            )
            for job in self.periodic:
                tg.create_task(self._loop(job), name=job.name)

    async def _loop(self, job: Periodic) -> None:
        while True:
            await asyncio.sleep(job.interval)
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("periodic job failed", extra={"job": job.name, "error": str(exc)})


def _name(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name") or "")
