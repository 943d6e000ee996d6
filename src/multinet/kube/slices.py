"""Adapter: writes this node's ResourceSlices (the plan comes from ``multinet.slices``).

``publish(devices)`` lists the node's slices of our driver (field selectors ``spec.nodeName`` and
``spec.driver``), plans, and applies deletes, updates, creates in that order. Nothing is written
when nothing changed. A 409 Conflict or 404 (someone else wrote or deleted a slice between our
list and our write, or we raced ourselves after an apiserver restart) re-lists and re-plans at
once, a few times; anything else (apiserver down, 5xx, 429) raises ``PublishError`` with
``retryable`` set, and the publish loop retries with backoff. Safe to call any number of times.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from kubernetes_asyncio import client

from multinet import slices
from multinet.api import names
from multinet.devices.model import Device
from multinet.errors import MultinetError
from multinet.kube.coreapi import CoreApi
from multinet.kube.errors import ApiError, NotFound, read_body, translated

log = logging.getLogger(__name__)

_RACES = (404, 409)
_REPLANS = 5


class PublishError(MultinetError):
    """Slices could not be written; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def _mapped(exc: ApiError, what: str) -> PublishError:
    detail = (exc.body or exc.reason or "")[:300]
    retryable = exc.transient or exc.status in _RACES
    return PublishError(f"{what}: HTTP {exc.status}: {detail}", retryable=retryable)


class SlicePublisher:
    def __init__(
        self, api: client.ApiClient, node_name: str, *, driver: str = names.DRIVER
    ) -> None:
        # Typed as Any: we send and read raw JSON dicts, not the generated models the stubs want.
        self._resource: Any = client.ResourceV1Api(api)
        self._core = CoreApi(api)
        self.node_name = node_name
        self.driver = driver
        self._node: slices.NodeRef | None = None
        #: Writes issued since start (creates + updates + deletes), for tests and metrics.
        self.writes = 0

    async def _node_ref(self) -> slices.NodeRef:
        if self._node is None:
            node = await self._core.read_node(self.node_name)
            uid = (node.get("metadata") or {}).get("uid")
            self._node = slices.NodeRef(name=self.node_name, uid=str(uid))
        return self._node

    async def existing(self) -> list[dict[str, Any]]:
        """This node's slices of our driver as JSON dicts (camelCase, as stored)."""
        selector = f"spec.nodeName={self.node_name},spec.driver={self.driver}"
        with translated("list ResourceSlices"):
            resp = await self._resource.list_resource_slice(
                field_selector=selector, _preload_content=False
            )
            doc = json.loads(await read_body(resp))
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    async def publish(self, devices: Sequence[Device]) -> slices.SlicePlan:
        """Make the apiserver hold exactly ``devices`` for this node; returns the last plan."""
        for attempt in range(_REPLANS):
            try:
                with translated(f"publishing ResourceSlices of node {self.node_name}"):
                    node = await self._node_ref()
                    plan = slices.plan(node, devices, await self.existing(), driver=self.driver)
                    if not plan.empty:
                        await self._apply(plan)
                return plan
            except ApiError as exc:
                if exc.status == 404 and self._node is None:
                    raise PublishError(
                        f"node {self.node_name} does not exist: slices need it as their owner",
                        retryable=True,
                    ) from exc
                if exc.status in _RACES and attempt + 1 < _REPLANS:
                    log.info(
                        "slice write raced (HTTP %s); re-reading and planning again", exc.status
                    )
                    self._node = None  # a recreated Node has a new UID
                    continue
                raise _mapped(exc, f"publishing ResourceSlices of node {self.node_name}") from exc
        raise PublishError(f"publishing ResourceSlices of node {self.node_name}: kept racing")

    async def _apply(self, plan: slices.SlicePlan) -> None:
        log.info(
            "publishing %d devices in %d slices (generation %d): %d delete, %d update, "
            "%d create (%s)",
            plan.device_count,
            plan.slice_count,
            plan.generation,
            len(plan.to_delete),
            len(plan.to_update),
            len(plan.to_create),
            ", ".join(plan.reasons),
        )
        for name in plan.to_delete:
            try:
                with translated(f"delete ResourceSlice {name}"):
                    await self._resource.delete_resource_slice(name)
            except NotFound:  # already gone is what we wanted
                pass
            self.writes += 1
        for body in plan.to_update:
            await self._resource.replace_resource_slice(body["metadata"]["name"], body)
            self.writes += 1
        for body in plan.to_create:
            await self._resource.create_resource_slice(body)
            self.writes += 1

    async def delete_all(self) -> int:
        """Remove every slice of this node and driver (used by tests and a clean uninstall)."""
        count = 0
        for item in await self.existing():
            try:
                with translated("deleting ResourceSlices"):
                    await self._resource.delete_resource_slice(item["metadata"]["name"])
                count += 1
            except NotFound:
                pass
            except ApiError as exc:
                raise _mapped(exc, "deleting ResourceSlices") from exc
        return count
