"""The controller's one door to the apiserver (kubernetes_asyncio), foreign errors mapped here.

Everything is plain dicts through the generic custom-objects client (it serves any
``/apis/<group>/<version>`` resource, including resource.k8s.io/v1 and coordination.k8s.io/v1),
plus core/v1 Events. ``ApiError`` (and ``Conflict``/``NotFound``) are the only errors that leave.
Each method says which RBAC verb it needs; deploy/base/controller-rbac.yaml grants exactly those.
"""

from __future__ import annotations

import datetime
import os
import uuid
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from multinet.api import names
from multinet.errors import ConfigError, MultinetError

MERGE_PATCH = "application/merge-patch+json"
EVENTS_NAMESPACE = "default"  # where Events about cluster-scoped objects go (as for Nodes)
COMPONENT = "multinet-controller"


class ApiError(MultinetError):
    """The apiserver refused or could not be reached; retrying later may help."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Conflict(ApiError):
    """resourceVersion moved on (or the object exists): re-read and decide again."""


class NotFound(ApiError):
    pass


def _mapped(exc: ApiException, what: str) -> ApiError:
    kind = {409: Conflict, 404: NotFound}.get(exc.status, ApiError)
    return kind(f"{what}: {exc.status} {exc.reason}: {str(exc.body)[:300]}", exc.status)


def _map_transport_errors(api: client.ApiClient) -> None:
    """An unreachable apiserver (restarting, network blip) surfaces as aiohttp/OS errors that
    every caller would have to know; turn them into ApiException(status=0) at the one place all
    requests pass, so they become a retryable ApiError like any other refusal."""
    rest = api.rest_client
    send = rest.request

    async def request(*args: Any, **kwargs: Any) -> Any:
        try:
            return await send(*args, **kwargs)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            mapped = ApiException(status=0, reason=f"apiserver unreachable: {exc}")
            mapped.body = b""  # the generated client decodes the body of every ApiException
            raise mapped from exc

    rest.request = request  # type: ignore[method-assign]  # on this instance only


async def load_configuration(kubeconfig: str) -> client.Configuration:
    """From ``kubeconfig``, or the pod's service account when empty."""
    cfg = client.Configuration()
    if kubeconfig and not os.path.isfile(kubeconfig):  # noqa: ASYNC240 (once, at start-up)
        raise ConfigError([f"--kubeconfig: {kubeconfig} does not exist"])
    try:
        if kubeconfig:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        where = f"--kubeconfig: {kubeconfig}" if kubeconfig else "in-cluster config"
        raise ConfigError([f"{where}: {exc}"]) from exc
    return cfg


class Kube:
    def __init__(self, api: client.ApiClient, *, instance: str = "") -> None:
        self._api = api
        _map_transport_errors(api)
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
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
            obj: dict[str, Any] = await self._objects.get_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, name
            )
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _mapped(exc, f"get PodNetwork {name}") from exc

    async def list_podnetworks(self) -> list[dict[str, Any]]:
        try:
            out = await self._objects.list_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL
            )
        except ApiException as exc:
            raise _mapped(exc, "list PodNetworks") from exc
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
        try:
            obj: dict[str, Any] = await self._objects.patch_cluster_custom_object_status(
                names.GROUP, names.VERSION, names.PLURAL, name, body, _content_type=MERGE_PATCH
            )  # type: ignore[call-arg]  # the stubs omit the generic request options
            return obj
        except ApiException as exc:
            raise _mapped(exc, f"patch status of PodNetwork {name}") from exc

    async def patch_podnetwork_finalizers(
        self, name: str, resource_version: str, finalizers: list[str]
    ) -> dict[str, Any]:
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        try:
            obj: dict[str, Any] = await self._objects.patch_cluster_custom_object(
                names.GROUP, names.VERSION, names.PLURAL, name, body, _content_type=MERGE_PATCH
            )  # type: ignore[call-arg]
            return obj
        except ApiException as exc:
            raise _mapped(exc, f"patch finalizers of PodNetwork {name}") from exc

    # --- DeviceClasses: get, create, update ----------------------------------------------

    async def get_device_class(self, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self._objects.get_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", name
            )
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _mapped(exc, f"get DeviceClass {name}") from exc

    async def create_device_class(self, body: dict[str, Any]) -> None:
        try:
            await self._objects.create_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", body
            )
        except ApiException as exc:
            raise _mapped(exc, f"create DeviceClass {body['metadata']['name']}") from exc

    async def replace_device_class(self, existing: dict[str, Any], body: dict[str, Any]) -> None:
        merged = {**existing, "spec": body["spec"]}
        name = body["metadata"]["name"]
        try:
            await self._objects.replace_cluster_custom_object(
                "resource.k8s.io", "v1", "deviceclasses", name, merged
            )
        except ApiException as exc:
            raise _mapped(exc, f"update DeviceClass {name}") from exc

    # --- claims and slices: list ---------------------------------------------------------

    async def list_resource_claims(self) -> list[dict[str, Any]]:
        try:
            out = await self._objects.list_cluster_custom_object(
                "resource.k8s.io", "v1", "resourceclaims"
            )
        except ApiException as exc:
            raise _mapped(exc, "list ResourceClaims") from exc
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    async def list_resource_slices(self) -> list[dict[str, Any]]:
        try:
            out = await self._objects.list_cluster_custom_object(
                "resource.k8s.io",
                "v1",
                "resourceslices",
                field_selector=f"spec.driver={names.DRIVER}",
            )
        except ApiException as exc:
            raise _mapped(exc, "list ResourceSlices") from exc
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
        try:
            await self._core.create_namespaced_event(EVENTS_NAMESPACE, body)  # type: ignore[arg-type]
        except ApiException as exc:
            raise _mapped(exc, f"post Event {reason} for {meta.get('name')}") from exc

    # --- Leases (leader election): get, create, update one Lease ------------------------

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self._objects.get_namespaced_custom_object(
                "coordination.k8s.io", "v1", namespace, "leases", name
            )
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _mapped(exc, f"get Lease {namespace}/{name}") from exc

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = await self._objects.create_namespaced_custom_object(
                "coordination.k8s.io", "v1", namespace, "leases", body
            )
            return obj
        except ApiException as exc:
            raise _mapped(exc, f"create Lease {namespace}/{body['metadata']['name']}") from exc

    async def replace_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        try:
            obj: dict[str, Any] = await self._objects.replace_namespaced_custom_object(
                "coordination.k8s.io", "v1", namespace, "leases", name, body
            )
            return obj
        except ApiException as exc:
            raise _mapped(exc, f"update Lease {namespace}/{name}") from exc
