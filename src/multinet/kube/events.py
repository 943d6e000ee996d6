"""Adapter: core/v1 Events on the objects users look at (claims, pods, nodes, PodNetworks).

An Event is a courtesy to the user, never a step of the data flow: `post` only queues it and
returns at once (hooks call it under the NRI deadline), a background task writes it, and a
failed write is logged, not raised. Events of cluster-scoped objects go to `default`, as
kubectl looks for them there.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes_asyncio import client

from multinet.api import names
from multinet.kube.coreapi import CoreApi

log = logging.getLogger(__name__)

CLUSTER_SCOPED_NAMESPACE = "default"
COMPONENT = f"{names.DRIVER}/node-agent"  # as the conflict Events always said

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None  # None for cluster-scoped objects
    uid: str = ""


def claim_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef("resource.k8s.io/v1", "ResourceClaim", name, namespace, uid)


def node_ref(name: str) -> ObjectRef:
    return ObjectRef("v1", "Node", name, None, name)


def event_body(
    about: ObjectRef, type_: EventType, reason: str, message: str, *, host: str
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    namespace = about.namespace or CLUSTER_SCOPED_NAMESPACE
    involved: dict[str, Any] = {
        "apiVersion": about.api_version,
        "kind": about.kind,
        "name": about.name,
        "uid": about.uid,
    }
    if about.namespace:
        involved["namespace"] = about.namespace
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{about.name}.", "namespace": namespace},
        "involvedObject": involved,
        "type": type_,
        "reason": reason,
        "message": message[:1024],  # the apiserver caps Event messages; keep the start
        "source": {"component": COMPONENT, "host": host},
        "reportingComponent": COMPONENT,
        "reportingInstance": host,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    """Fire-and-forget Events, written in order by one background task per recorder."""

    def __init__(self, api: client.ApiClient, *, host: str) -> None:
        self._core = CoreApi(api)
        self._host = host
        self._pending: set[asyncio.Task[None]] = set()

    def post(self, about: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        body = event_body(about, type_, reason, message, host=self._host)
        task = asyncio.get_running_loop().create_task(self._write(body), name=f"event {reason}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, body: dict[str, Any]) -> None:
        namespace = body["metadata"]["namespace"]
        try:
            await self._core.create_namespaced_event(namespace, body)
        except Exception as exc:  # a courtesy: a lost Event must never fail the caller
            log.warning(
                "cannot record Event %s on %s %s: %s",
                body["reason"],
                body["involvedObject"]["kind"],
                body["involvedObject"]["name"],
                exc,
            )

    async def drain(self) -> None:
        """Wait for queued Events (shutdown, tests)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class NoEvents:
    """For programs and tests without an apiserver: Events are dropped."""

    def post(self, about: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        log.debug("event %s %s on %s %s: %s", type_, reason, about.kind, about.name, message)
