"""One reconcile pass over one PodNetwork: read, decide (``decisions``, ``sharing``), write,
report.

Safe to run any number of times: every write is conditional on what was just read (status and
finalizer patches carry the resourceVersion; a conflict re-reads and decides again), nothing is
written when nothing changed, and Events are posted only for condition transitions.
PodNetworks of other providers are returned from untouched: no finalizer, no status, no Event.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
from collections.abc import Callable, Iterable
from typing import Any

from multinet.api import conditions, names, podnetwork
from multinet.api.conditions import Absent, Desired
from multinet.api.podnetwork import PodNetwork
from multinet.controller import decisions, sharing
from multinet.errors import ConfigError
from multinet.kube import errors
from multinet.kube.controllerapi import Kube

log = logging.getLogger(__name__)

STATUS_ATTEMPTS = 5  # conflicts in a row before giving up to the queue's backoff


class Result(enum.Enum):
    DONE = "done"
    HELD = "held"  # being deleted, waiting for claims to let go: check again later
    IGNORED = "ignored"  # gone, or not ours


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _not_listed() -> Iterable[sharing.SliceView] | None:
    return None


@dataclasses.dataclass
class Reconciler:
    kube: Kube
    now: Callable[[], datetime.datetime] = _now
    #: What the published slices show of shared NICs (``runtime.Controller`` keeps it from a
    #: watch); None until the slices were listed once, and then ``Sharing`` is left as it is.
    slice_views: Callable[[], Iterable[sharing.SliceView] | None] = _not_listed

    async def reconcile(self, name: str) -> Result:
        try:
            return await self._reconcile(name)
        except errors.NotFound:  # deleted while we were working on it: nothing left to do
            return Result.IGNORED

    async def _reconcile(self, name: str) -> Result:
        body = await self.kube.get_podnetwork(name)
        if body is None:
            return Result.IGNORED
        try:
            pnw = podnetwork.parse(body)
        except ConfigError as exc:  # the CRD schema prevents this; never guess at such an object
            log.error("unreadable PodNetwork", extra={"podnetwork": name, "error": str(exc)})
            return Result.IGNORED
        if not pnw.ours:
            return Result.IGNORED
        if pnw.deleting:
            return await self._deleting(body, pnw)
        if decisions.needs_finalizer(pnw):
            body = await self.kube.patch_podnetwork_finalizers(
                name, pnw.metadata.resource_version, [*pnw.metadata.finalizers, names.FINALIZER]
            )
            pnw = podnetwork.parse(body)
        action = await self._device_class(pnw)
        await self.write_conditions(
            body,
            lambda p: [
                decisions.readiness(p),
                decisions.device_class_condition(action, p),
                *self._sharing(p),
            ],
        )
        return Result.DONE

    def _sharing(self, pnw: PodNetwork) -> list[Desired | Absent]:
        views = self.slice_views()
        return [] if views is None else [sharing.condition(pnw, views)]

    async def _deleting(self, body: dict[str, Any], pnw: PodNetwork) -> Result:
        if not decisions.holds_finalizer(pnw):
            return Result.IGNORED
        users = decisions.claims_using(
            pnw.metadata.name,
            await self.kube.list_resource_claims(),
            await self.kube.list_resource_slices(),
        )
        if users:
            await self.write_conditions(body, lambda p: [decisions.deleting(p, users)])
            return Result.HELD
        rest = [f for f in pnw.metadata.finalizers if f != names.FINALIZER]
        await self.kube.patch_podnetwork_finalizers(
            pnw.metadata.name, pnw.metadata.resource_version, rest
        )
        log.info(
            "no claim uses the network any more; released", extra={"podnetwork": pnw.metadata.name}
        )
        await self._event(
            body, "Normal", "Released", "no ResourceClaim holds devices of this network"
        )
        return Result.DONE

    async def _device_class(self, pnw: PodNetwork) -> decisions.DeviceClassAction:
        name = pnw.metadata.name
        existing = await self.kube.get_device_class(name)
        action = decisions.device_class_action(existing, pnw)
        if action == "create":
            try:
                await self.kube.create_device_class(decisions.device_class_body(pnw))
                log.info("created DeviceClass", extra={"podnetwork": name})
            except errors.Conflict:  # someone created it in between: look again
                action = decisions.device_class_action(await self.kube.get_device_class(name), pnw)
        elif action == "update" and existing is not None:
            await self.kube.replace_device_class(existing, decisions.device_class_body(pnw))
            log.info("updated DeviceClass selectors", extra={"podnetwork": name})
        return action

    async def write_conditions(
        self, body: dict[str, Any], want: Callable[[PodNetwork], list[Desired | Absent]]
    ) -> None:
        """Read-modify-write of ``status.conditions``; ``want`` is re-evaluated after a conflict
        because the spec (and so the answer) may have changed."""
        name = body["metadata"]["name"]
        for attempt in range(STATUS_ATTEMPTS):
            if attempt:
                fresh = await self.kube.get_podnetwork(name)
                if fresh is None:
                    return
                body = fresh
            pnw = podnetwork.parse(body)
            wanted = want(pnw)
            outcome = conditions.set_conditions(
                body.get("status", {}).get("conditions"), wanted, now=self.now()
            )
            if outcome.skipped:
                log.info(
                    "condition has a newer observedGeneration; left alone",
                    extra={"podnetwork": name, "types": ",".join(outcome.skipped)},
                )
            if not outcome.changed:
                return
            try:
                await self.kube.patch_podnetwork_status(
                    name, pnw.metadata.resource_version, outcome.conditions
                )
            except errors.Conflict:
                continue
            for t in outcome.transitions:
                log.info(
                    "condition changed",
                    extra={
                        "podnetwork": name,
                        "type": t.type,
                        "status": t.status,
                        "reason": t.reason,
                    },
                )
                await self._event(
                    body, decisions.event_type(t), t.reason, f"{t.type}={t.status}: {t.message}"
                )
            return
        raise errors.Conflict(f"status of PodNetwork {name}: {STATUS_ATTEMPTS} conflicts in a row")

    async def _event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.post_event(body, type_=type_, reason=reason, message=message)
        except errors.ApiError as exc:  # an Event is a courtesy; never fail the reconcile on it
            log.warning("could not post Event", extra={"reason": reason, "error": str(exc)})
