"""Adapter: the reads NodePrepareResources needs, the ResourceClaim and the PodNetwork.

Both come back as plain JSON documents (camelCase keys, exactly as the apiserver sent them), read
without the client's model classes so fields newer than the client survive and nothing is
re-validated on the way. API errors are mapped to ClaimError here, once.

The PodNetwork is read from the agent's own watch of PodNetworks when it holds it (``cached``):
the device was bound to the network by that same view, so its parameters are consistent with
the binding, and a prepare saves an API round trip. A network the watch does not hold (not
listed yet) is read from the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from multinet.api import documents, names, parameters, podnetwork
from multinet.api.parameters import NetworkParameters
from multinet.errors import ClaimError, ConfigError
from multinet.kube.errors import ApiError, NotFound, read_body, translated


class ApiLookups:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        cached: Callable[[str], Mapping[str, Any] | None] = lambda _name: None,
    ) -> None:
        self._resource = client.ResourceV1Api(api)
        self._objects = client.CustomObjectsApi(api)
        self._cached = cached

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ResourceClaim (resource.k8s.io/v1), None when it does not exist."""
        try:
            with translated(f"claim {namespace}/{name}"):
                # _preload_content=False: the raw aiohttp response, not the model the stubs claim.
                response: Any = await self._resource.read_namespaced_resource_claim(
                    name, namespace, _preload_content=False
                )
                raw = await read_body(response)
        except NotFound:
            return None
        except ApiError as exc:
            raise ClaimError(
                f"claim {namespace}/{name}: cannot read it from the API: {exc.status} {exc.reason}"
            ) from exc
        try:
            # Deep subtrees (an opaque config can nest thousands of levels) come back cut, so
            # validation names the field that holds one instead of the agent crashing.
            doc = documents.loads(raw)
        except ValueError as exc:
            raise ConfigError(
                ["the object is not JSON"], subject=f"claim {namespace}/{name}"
            ) from exc
        if not isinstance(doc, dict):
            raise ConfigError(
                ["the object is not a JSON object"], subject=f"claim {namespace}/{name}"
            )
        return doc

    async def get_network_parameters(self, network: str) -> NetworkParameters:
        """The validated parameters of an enabled PodNetwork of ours; ClaimError / ConfigError."""
        doc = self._cached(network)
        if doc is None:
            doc = await self._read_network(network)
        spec = doc.get("spec") or {}
        if not isinstance(spec, dict):
            raise ConfigError(["spec: must be an object"], subject=f"PodNetwork {network}")
        if not podnetwork.is_ours(spec.get("provider")):
            raise ClaimError(f"PodNetwork {network}: provider {spec.get('provider')!r} is not ours")
        if spec.get("enabled") is False:
            raise ClaimError(f"PodNetwork {network} is disabled (spec.enabled: false)")
        return parameters.parse(spec.get("parameters"), prefix=f"PodNetwork {network} parameters")

    async def _read_network(self, network: str) -> Mapping[str, Any]:
        try:
            with translated(f"PodNetwork {network}"):
                response: Any = await self._objects.get_cluster_custom_object(
                    names.GROUP, names.VERSION, names.PLURAL, network, _preload_content=False
                )
                raw = await read_body(response)
        except NotFound as exc:
            raise ClaimError(f"PodNetwork {network} does not exist") from exc
        except ApiError as exc:
            raise ClaimError(
                f"PodNetwork {network}: cannot read it from the API: {exc.status} {exc.reason}"
            ) from exc
        try:
            doc = documents.loads(raw)
        except ValueError as exc:
            raise ConfigError(["the object is not JSON"], subject=f"PodNetwork {network}") from exc
        return doc if isinstance(doc, dict) else {}
