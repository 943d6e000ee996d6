"""Adapter: the node agent's view of PodNetworks (list + watch), and conflict Events on them.

``PodNetworkWatcher.run()`` keeps ``selectors`` (the Ready networks of provider multinet.dev, as
``NetworkSelector``s) current and sets ``changed`` whenever that set changes, so a disabled,
not-Ready or deleted network loses its devices at the next publish, within the debounce delay.
The watch resumes where it was when the server ends it, and restarts from a fresh list on 410
Gone and on any error (with backoff, e.g. while the apiserver restarts); a re-list that yields the
same selectors wakes nobody.

Cost per event: only the network the event is about is judged again, and the log names only the
networks whose verdict changed. Judging every network on every event (and logging all of them)
made a burst of N new networks cost each node N^2 judgements and N log lines of N names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client

from multinet.api import names
from multinet.devices import networks
from multinet.devices.binding import DeviceConflict, NetworkSelector
from multinet.kube import events, watching
from multinet.kube.coreapi import CoreApi
from multinet.kube.errors import ApiError, translated
from multinet.retry import Backoff

log = logging.getLogger(__name__)

CONFLICT_REASON = "DeviceConflict"
PODNETWORKS = watching.Resource(names.GROUP, names.VERSION, names.PLURAL)


def _judge(name: str, body: Mapping[str, Any]) -> networks.Verdict | None:
    """``networks.judge`` that cannot take the other networks down with it.

    ``judge`` is meant to be total; should a body still make it raise, that one network binds
    nothing (and says why in the log) while every other network keeps its devices.
    """
    try:
        return networks.judge(body)
    except Exception as exc:
        log.exception("cannot judge PodNetwork %s; it binds no devices", name)
        return networks.Verdict(name, None, f"cannot be judged: {exc!r}")


def _selector(verdicts: Mapping[str, networks.Verdict | None], name: str) -> NetworkSelector | None:
    verdict = verdicts.get(name)
    return verdict.selector if verdict else None


def _reason(verdicts: Mapping[str, networks.Verdict | None], name: str) -> str:
    verdict = verdicts.get(name)
    return verdict.reason if verdict else "gone or not ours"


class PodNetworkWatcher:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        node_name: str,
        watch_timeout_seconds: int = 300,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._custom: Any = client.CustomObjectsApi(api)
        self._core = CoreApi(api)
        self.node_name = node_name
        self.watch_timeout_seconds = watch_timeout_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._bodies: dict[str, Mapping[str, Any]] = {}
        self._verdicts: dict[str, networks.Verdict | None] = {}
        self.selectors: tuple[NetworkSelector, ...] = ()
        self.changed = asyncio.Event()
        self.synced = asyncio.Event()  # set after the first successful list
        self._reported: set[DeviceConflict] = set()

    # -- state ---------------------------------------------------------------------------

    def _recompute(self, before: Mapping[str, networks.Verdict | None]) -> None:
        """``self._verdicts`` changed at the names of ``before`` (their earlier verdicts): if a
        network starts or stops binding, rebuild ``selectors``, say so and set ``changed``."""
        now = self._verdicts
        moved = sorted(n for n in before if _selector(before, n) != _selector(now, n))
        if not moved:
            return
        self.selectors = tuple(
            sorted((v.selector for v in now.values() if v and v.selector), key=lambda s: s.name)
        )
        binding = [n for n in moved if _selector(now, n)]
        stopped = {n: _reason(now, n) for n in moved if not _selector(now, n)}
        log.info(
            "networks binding devices now: %s; no longer or not binding: %s (%d binding in all)",
            binding or "none",
            stopped or "none",
            len(self.selectors),
        )
        self.changed.set()

    def body(self, name: str) -> Mapping[str, Any] | None:
        """The PodNetwork as the watch last saw it; None if not seen (or deleted)."""
        return self._bodies.get(name)

    def uids(self) -> dict[str, str]:
        return {n: str((b.get("metadata") or {}).get("uid") or "") for n, b in self._bodies.items()}

    # -- list + watch --------------------------------------------------------------------

    async def _list(self) -> str:
        # An item without a readable name cannot be watched or bound; the others still are.
        items, resource_version = await watching.list_objects(self._custom, PODNETWORKS)
        self._bodies = {name: i for i in items if (name := networks.name_of(i))}
        before, self._verdicts = self._verdicts, {n: _judge(n, b) for n, b in self._bodies.items()}
        self._recompute({n: before.get(n) for n in before.keys() | self._verdicts.keys()})
        self.synced.set()
        return resource_version

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = networks.name_of(obj)
        if not name:
            return
        old = self._verdicts.get(name)
        if kind == "DELETED":
            self._bodies.pop(name, None)
            self._verdicts.pop(name, None)
        else:
            self._bodies[name] = obj
            self._verdicts[name] = _judge(name, obj)
        self._recompute({name: old})

    async def run(self) -> None:
        """Forever: list, watch, and start over after errors (see ``kube.watching``)."""
        await watching.run(
            "PodNetwork",
            self._list,
            lambda rv: watching.watch_events(
                self._custom, PODNETWORKS, rv, self.watch_timeout_seconds
            ),
            self._apply,
            backoff=Backoff(initial=0.5, cap=self.max_backoff_seconds),
        )

    # -- conflict events -----------------------------------------------------------------

    async def report_conflicts(self, conflicts: Sequence[DeviceConflict]) -> int:
        """A Warning Event on every network of each *new* conflict; returns Events created.

        A conflict that persists is reported once per agent run; one that goes away and comes
        back is reported again.
        """
        current = set(conflicts)
        created = 0
        uids = self.uids()
        for conflict in sorted(current - self._reported, key=lambda c: c.device):
            for network in conflict.networks:
                try:
                    with translated(f"conflict Event on PodNetwork {network}"):
                        await self._core.create_namespaced_event(
                            events.CLUSTER_SCOPED_NAMESPACE,
                            self._event(conflict, network, uids.get(network, "")),
                        )
                    created += 1
                except ApiError as exc:  # an Event is a courtesy: log, never fail publishing
                    log.warning(
                        "cannot record conflict Event on PodNetwork %s: HTTP %s",
                        network,
                        exc.status,
                    )
        self._reported = current
        return created

    def _event(self, conflict: DeviceConflict, network: str, uid: str) -> dict[str, Any]:
        others = ", ".join(n for n in conflict.networks if n != network)
        return events.event_body(
            events.ObjectRef(names.API_VERSION, names.KIND, network, None, uid),
            "Warning",
            CONFLICT_REASON,
            f"interface {conflict.ifname} (device {conflict.device}) on node {self.node_name} "
            f"is selected by PodNetworks {', '.join(conflict.networks)}; it is bound to none "
            f"of them until only one selects it (also selected by: {others})",
            host=self.node_name,
        )
