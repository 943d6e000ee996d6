"""The controller's calls to the apiserver: PodNetworks, DeviceClasses, claims, slices, Events,
Leases.

Everything is plain dicts through the generic custom-objects client (it serves any
``/apis/<group>/<version>`` resource, including resource.k8s.io/v1 and coordination.k8s.io/v1),
plus core/v1 Events. Errors leave as ``kube.errors.ApiError`` (``Conflict``/``NotFound``) only.
Each method says which RBAC verb it needs; deploy/base/controller-rbac.yaml grants exactly those.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio import client

from multinet.api import names
from multinet.kube import watching
from multinet.kube.coreapi import CoreApi
from multinet.kube.errors import ApiError, Conflict, NotFound, translated

__all__ = ["ApiError", "Conflict", "Kube", "NotFound"]

MERGE_PATCH = "application/merge-patch+json"
EVENTS_NAMESPACE = "default"  # where Events about cluster-scoped objects go (as for Nodes)
COMPONENT = "multinet-controller"

PODNETWORKS = watching.Resource(names.GROUP, names.VERSION, names.PLURAL)
RESOURCECLAIMS = watching.Resource("resource.k8s.io", "v1", "resourceclaims")
#: Our driver's slices: how the agents published shared NICs (``controller.sharing``).
RESOURCESLICES = watching.Resource(
    "resource.k8s.io", "v1", "resourceslices", field_selector=f"spec.driver={names.DRIVER}"
)


class Kube:
    def __init__(self, api: client.ApiClient, *, instance: str = "") -> None:
        self._api = api
        self._objects = client.CustomObjectsApi(api)
        self._core = CoreApi(api)
        self._instance = instance or os.environ.get("HOSTNAME", "") or "multinet-controller"

    @property
    def api(self) -> client.ApiClient:
        """The underlying client, for other adapters sharing this connection (IPAM GC)."""
        return self._api

    async def close(self) -> None:
        await self._api.close()

    # --- PodNetworks: get, list, patch; podnetworks/status: patch ---------------------------

    async def get_podnetwork(self, name: str) -> dict[str, Any] | None:
        try:
            with translated(f"get PodNetwork {name}"):
                obj: dict[str, Any] = await self._objects.get_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, name
                )
                return obj
        except NotFound:
            return None

    async def list_podnetworks(self) -> list[dict[str, Any]]:
        with translated("list PodNetworks"):
            out = await self._objects.list_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL
            )
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    async def patch_podnetwork_status(
        self, name: str, resource_version: str, conditions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Replace ``status.conditions`` iff the object is still at ``resource_version``."""
        body = {
            "metadata": {"resourceVersion": resource_version},
            "status": {"conditions": conditions},
        }
        with translated(f"patch status of PodNetwork {name}"):
            obj: dict[str, Any] = await self._objects.patch_cluster_custom_object_status(
                names.GROUP, names.VERSION, names.PLURAL, name, body, _content_type=MERGE_PATCH
            )  # type: ignore[call-arg]  # the stubs omit the generic request options
            return obj

    async def patch_podnetwork_finalizers(
        self, name: str, resource_version: str, finalizers: list[str]
    ) -> dict[str, Any]:
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        with translated(f"patch finalizers of PodNetwork {name}"):
            obj: dict[str, Any] = await self._objects.patch_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, name, body, _content_type=MERGE_PATCH
            )  # type: ignore[call-arg]
            return obj

    # --- watches: list + watch (PodNetworks, ResourceClaims, ResourceSlices) -------------

    async def watch(
        self,
        resource: watching.Resource,
        *,
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        timeout_seconds: int = watching.WATCH_TIMEOUT_SECONDS,
    ) -> None:
        """Forever: hand every full list to ``on_list`` and each later change to ``on_event``."""

        async def relist() -> str:
            items, resource_version = await watching.list_objects(self._objects, resource)
            on_list(items)
            return resource_version

        await watching.run(
            resource.plural,
            relist,
            lambda rv: watching.watch_events(self._objects, resource, rv, timeout_seconds),
            on_event,
        )

    # --- DeviceClasses: get, create, update ----------------------------------------------

    async def get_device_class(self, name: str) -> dict[str, Any] | None:
        try:
            with translated(f"get DeviceClass {name}"):
                obj: dict[str, Any] = await self._objects.get_cluster_custom_object(
                    "resource.k8s.io", "v1", "deviceclasses", name
                )
                return obj
        except NotFound:
            return None

    async def create_device_class(self, body: dict[str, Any]) -> None:
        with translated(f"create DeviceClass {body['metadata']['name']}"):
            await self._objects.create_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", body
            )

    async def replace_device_class(self, existing: dict[str, Any], body: dict[str, Any]) -> None:
        merged = {**existing, "spec": body["spec"]}
        name = body["metadata"]["name"]
        with translated(f"update DeviceClass {name}"):
            await self._objects.replace_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", name, merged
            )

    # --- claims and slices: list ---------------------------------------------------------

    async def list_resource_claims(self) -> list[dict[str, Any]]:
        with translated("list ResourceClaims"):
            out = await self._objects.list_cluster_custom_object(
                "resource.k8s.io", "v1", "resourceclaims"
            )
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    async def list_resource_slices(self) -> list[dict[str, Any]]:
        with translated("list ResourceSlices"):
            out = await self._objects.list_cluster_custom_object(
                "resource.k8s.io",
                "v1",
                "resourceslices",
                field_selector=f"spec.driver={names.DRIVER}",
            )
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    # --- Events: create in EVENTS_NAMESPACE ----------------------------------------------

    async def post_event(
        self, obj: dict[str, Any], *, type_: str, reason: str, message: str
    ) -> None:
        meta = obj.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                "namespace": EVENTS_NAMESPACE,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", names.API_VERSION),
                "kind": obj.get("kind", names.KIND),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        with translated(f"post Event {reason} for {meta.get('name')}"):
            await self._core.create_namespaced_event(EVENTS_NAMESPACE, body)

    # --- Leases (leader election): get, create, update one Lease ------------------------

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with translated(f"get Lease {namespace}/{name}"):
                obj: dict[str, Any] = await self._objects.get_namespaced_custom_object(
                    "coordination.k8s.io", "v1", namespace, "leases", name
                )
                return obj
        except NotFound:
            return None

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with translated(f"create Lease {namespace}/{body['metadata']['name']}"):
            obj: dict[str, Any] = await self._objects.create_namespaced_custom_object(
                "coordination.k8s.io", "v1", namespace, "leases", body
            )
            return obj

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with translated(f"update Lease {namespace}/{name}"):
            obj: dict[str, Any] = await self._objects.replace_namespaced_custom_object(
                "coordination.k8s.io", "v1", namespace, "leases", name, body
            )
            return obj
