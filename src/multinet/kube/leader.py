"""Leader election on one coordination.k8s.io Lease, so two replicas never reconcile together.

Why a Lease rather than kopf peering: kopf peering needs a cluster-wide ClusterKopfPeering CRD plus
RBAC on it, and replicas of equal priority only *warn* about each other and keep running. A Lease
is what Kubernetes' own controllers use, needs only get/update on one named object (plus create)
in our namespace, and gives a real single leader.

Why ours rather than ``kubernetes_asyncio.leaderelection`` (read in 36.1.0, the pinned version):
- it never releases the Lease on a clean stop, so after every rolling update the standby waits a
  full ``lease_duration`` (15 s) before reconciling; we hand over at once;
- an unreachable apiserver (an aiohttp/OS error) raises out of its loop, since ``LeaseLock``
  catches only ApiException: the election ends instead of retrying until ``renew_deadline``;
- it writes ``acquireTime``/``renewTime`` from a naive local time suffixed "Z" (wrong off UTC),
  never counts ``leaseTransitions``, and logs every lost race with a traceback;
- it takes over by the wall clock (``time.time()``), where a step of the clock matters.

Rules (as client-go): a holder renews every ``retry_period``; a candidate takes over a Lease whose
record has not changed for ``lease_duration`` by *its own clock* (no trust in the writer's clock);
a leader that could not renew for ``renew_deadline`` stops, and the process exits so it restarts as
a candidate. On a clean stop the Lease is released so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from typing import Any

from multinet.kube import errors
from multinet.kube.controllerapi import Kube

log = logging.getLogger(__name__)


def _stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class LeaseElector:
    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0  # seconds a silent holder keeps the lease
    renew_deadline: float = 10.0  # seconds a leader keeps trying before giving up
    retry_period: float = 2.0  # seconds between attempts (and between renewals)
    _observed: tuple[Any, ...] | None = None
    _observed_at: float = 0.0

    def _body(self, lease: dict[str, Any] | None, *, acquire: bool) -> dict[str, Any]:
        spec = dict((lease or {}).get("spec") or {})
        now = _stamp()
        if acquire:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_duration),
            renewTime=now,
        )
        meta = dict((lease or {}).get("metadata") or {"name": self.name})
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    async def try_acquire_or_renew(self) -> bool:
        lease = await self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            try:
                await self.kube.create_lease(self.namespace, self._body(None, acquire=True))
                return True
            except errors.Conflict:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = time.monotonic() > self._observed_at + duration
        if holder and holder != self.identity and not expired:
            return False
        try:
            await self.kube.replace_lease(
                self.namespace, self._body(lease, acquire=holder != self.identity)
            )
            return True
        except errors.Conflict:
            return False

    async def acquire(self) -> None:
        """Return once this process holds the Lease."""
        announced = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    log.info("became leader", extra={"lease": f"{self.namespace}/{self.name}"})
                    return
            except errors.ApiError as exc:
                log.warning("leader election attempt failed", extra={"error": str(exc)})
            if not announced:
                log.info("waiting for leadership", extra={"lease": f"{self.namespace}/{self.name}"})
                announced = True
            await asyncio.sleep(self.retry_period)

    async def hold(self) -> None:
        """Renew until leadership is lost; returns then (the caller must stop working)."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                if await self.try_acquire_or_renew():
                    last_ok = time.monotonic()
                    continue
                log.error("another replica took the lease")
                return
            except errors.ApiError as exc:
                log.warning("lease renewal failed", extra={"error": str(exc)})
            if time.monotonic() - last_ok > self.renew_deadline:
                log.error("could not renew the lease in time; stepping down")
                return

    async def release(self) -> None:
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.kube.replace_lease(self.namespace, lease)
        except errors.ApiError as exc:
            log.warning("could not release the lease", extra={"error": str(exc)})
