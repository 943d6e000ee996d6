"""kopf wiring: login, the watch streams, and the queue they feed.

kopf provides authentication (``on.login``), list+watch with reconnects, and per-object event
delivery. Handlers are ``on.event`` only, so kopf itself never writes to any object (no progress
annotations, no kopf finalizer): what is written, and to which PodNetwork, is decided solely by
``reconcile`` — foreign PodNetworks stay exactly as their owners left them. Every event just puts a
name on the ``WorkQueue``; the single worker reconciles by re-reading the object.

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

import kopf

from multinet.api import names, podnetwork
from multinet.controller import kubeapi
from multinet.controller.reconcile import Reconciler, Result
from multinet.controller.workqueue import WorkQueue

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Periodic:
    """A named background job run every ``interval`` seconds; a failure is logged, not fatal."""

    name: str
    interval: float
    run: Callable[[], Awaitable[object]]


class Controller:
    def __init__(
        self,
        kube: kubeapi.Kube,
        *,
        recheck_interval: float = 10.0,
        resync_interval: float = 300.0,
        extra: Sequence[Periodic] = (),
    ) -> None:
        self.kube = kube
        self.reconciler = Reconciler(kube)
        self.queue = WorkQueue(self._reconcile)
        self.deleting: set[str] = set()
        self.recheck_interval = recheck_interval
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
            return
        self.queue.add(name)

    def claim_event(self) -> None:
        """Any claim change may release a deleting network; re-check those (cheap: usually none)."""
        for name in self.deleting:
            self.queue.add(name, 0.2)  # a short delay coalesces a burst of claim events

    async def resync(self) -> None:
        """Safety net for anything a watch missed: queue every PodNetwork of ours."""
        for body in await self.kube.list_podnetworks():
            self.podnetwork_event("RESYNC", body)

    # --- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.queue.run(), name="reconcile-queue")
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


def register(
    registry: kopf.OperatorRegistry,
    controller: Controller,
    login: Callable[[], Awaitable[kopf.ConnectionInfo]],
) -> None:
    """Attach the handlers to ``registry`` (an explicit one: no module-level kopf state)."""

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        return await login()

    @kopf.on.event(names.GROUP, names.VERSION, names.PLURAL, registry=registry)
    async def _podnetwork(event: kopf.RawEvent, **_: Any) -> None:
        controller.podnetwork_event(str(event.get("type")), dict(event.get("object") or {}))

    @kopf.on.event("resource.k8s.io", "v1", "resourceclaims", registry=registry)
    async def _claim(**_: Any) -> None:
        controller.claim_event()
