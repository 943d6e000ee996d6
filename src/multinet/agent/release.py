"""StopPodSandbox and RemovePodSandbox: give every interface back to the host as it was.

Time budget: StopPodSandbox runs inside the NRI deadline too, but it is the last moment the
pod's netns exists (CNI teardown follows), so it moves interfaces back right away, all of a
pod's devices concurrently. RemovePodSandbox arrives after the netns is gone and only cleans
up what Stop could not (the runtime only logs errors from either, so they never block pod
shutdown: every failure is logged and counted instead of raised).

Safe to run twice: an attachment is forgotten once its interface is back, so a repeated
Stop or a Remove after a good Stop finds nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from multinet.agent import metrics
from multinet.agent.pins import NetnsPins, netns_gone
from multinet.agent.ports import InterfaceMover, PodInfo, StateStore

log = logging.getLogger(__name__)


class Releaser:
    def __init__(self, *, store: StateStore, mover: InterfaceMover, pins: NetnsPins) -> None:
        self._store = store
        self._mover = mover
        self._pins = pins

    def _attachments(self, pod: PodInfo) -> list[str]:
        return [k for k, a in self._store.state.attachments.items() if a.pod_uid == pod.uid]

    async def stop_pod_sandbox(self, pod: PodInfo) -> None:
        keys = self._attachments(pod)
        if not keys:
            return
        results = await asyncio.gather(*(self._detach(k) for k in keys), return_exceptions=True)
        done = [k for k, r in zip(keys, results, strict=True) if r is True]
        await self._store.forget(done)
        log.info(
            "returned %d of %d interface(s) to the host",
            len(done),
            len(keys),
            extra={"pod": pod.ref, "podUID": pod.uid},
        )

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

    async def release_vanished(self, pods: Iterable[PodInfo]) -> None:
        """On (re)connect: attachments of pods that no longer run, or whose netns was replaced
        or removed while we were not listening, are recovered."""
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
        await self._recover(self._attachments(pod))

    async def reclaim_orphans(self, keys: Iterable[str]) -> None:
        """Recover attachments whose pod netns no longer exists.

        The agent can miss StopPodSandbox (it was restarted, or containerd was) and the sandbox
        may then be torn down before any Remove reaches us; NodeUnprepareResources calls this so
        such a claim is released instead of waiting forever for an interface that is not coming.
        """
        await self._recover(
            [
                k
                for k in keys
                if k in self._store.state.attachments
                and netns_gone(self._store.state.attachments[k].netns)
            ]
        )

    async def _recover(self, keys: list[str]) -> None:
        """The pod is gone or going without a Stop we could act on. Through our pin the netns
        may still hold the interface: move it back from there; otherwise look for it on the
        host (a physical NIC falls back under its pod-side name) or report it gone."""
        for key in keys:
            att = self._store.state.attachments[key]
            plan = self._store.plan(key)
            if plan is not None:
                if self._pins.pinned(key) and await self._detach(key):
                    outcome = "returned to the host from the pod's netns, held open by the agent"
                else:
                    try:
                        outcome = await self._mover.recover(plan, att)
                    except Exception as exc:
                        metrics.RESTORE_ERRORS.inc()
                        outcome = f"recovery failed: {exc}"
                log.warning(
                    "the pod's sandbox went away without a StopPodSandbox we could act on: %s",
                    outcome,
                    extra={"pod": att.pod, "podUID": att.pod_uid, "device": plan.device},
                )
            self._pins.unpin(key)
            await self._store.forget([key])
