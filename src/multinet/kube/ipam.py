"""Adapter: pool IPAM with the apiserver as arbiter (IPReservation objects, group multinet.dev).

One small cluster-scoped object per reserved address, named from the address alone by
`multinet.ipam.reservation_name`: addresses are unique across the cluster, whichever PodNetwork's
pool they come from. Creating the object is the atomic step: AlreadyExists means another claim
(on any node, of any network) holds the address and we try the next candidate. The object records
the network, the address, the claim (namespace/name/uid), request, device, pod and node, so a
retried prepare recognises its own reservation and the garbage collector knows whom to ask.

Safe to run twice: a reservation already held by the same claim, request, device and node is
reused; release deletes only objects held by the given claim on this node (a UID precondition
guards the delete). The node matters: a claim deallocated from node A and allocated again on
node B may get a device of the same name there, and A's late unprepare must not free B's address.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client

from multinet import ipam
from multinet.api import names
from multinet.api.fields import IPAddress
from multinet.errors import AllocationError
from multinet.ipam import Holder
from multinet.kube.errors import ApiError, Conflict, NotFound, translated
from multinet.retry import Backoff, retrying

log = logging.getLogger(__name__)

GROUP = names.IPRESERVATION_GROUP
VERSION = names.IPRESERVATION_VERSION
PLURAL = names.IPRESERVATION_PLURAL
KIND = names.IPRESERVATION_KIND


def _holder_text(spec: Mapping[str, Any]) -> str:
    claim = spec.get("claim") or {}
    return (
        f"claim {claim.get('namespace')}/{claim.get('name')} of network {spec.get('network')} "
        f"on node {spec.get('node')}"
    )


class Reservations:
    """Reserve and release addresses for one node's agent."""

    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)

    def _body(self, network: str, address: IPAddress, holder: Holder) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "network": network,
            "address": str(address),
            "claim": {
                "namespace": holder.claim.namespace,
                "name": holder.claim.name,
                "uid": holder.claim.uid,
            },
            "request": holder.request,
            "device": holder.device,
            "node": holder.node,
        }
        if holder.pod_uid:
            spec["pod"] = {"name": holder.pod_name or "", "uid": holder.pod_uid}
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": ipam.reservation_name(address)},
            "spec": spec,
        }

    async def _try(self, network: str, address: IPAddress, holder: Holder) -> dict[str, Any] | None:
        """Create the reservation. None when we hold it (now or from an earlier attempt); the
        holder's spec when someone else does."""
        body = self._body(network, address, holder)
        try:
            with translated(f"reserve {address}"):
                await self._objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
            return None
        except Conflict:
            pass  # someone holds it, maybe we from an earlier attempt: look at the holder
        except ApiError as exc:
            raise AllocationError(
                f"{holder.where}: network {network}: cannot reserve {address}: {_reason(exc)}"
            ) from exc
        existing = await self._get(body["metadata"]["name"])
        if existing is None:  # released between our create and get: try once more
            return await self._try(network, address, holder)
        spec: dict[str, Any] = existing.get("spec") or {}
        return None if holder.owns(spec) else spec

    async def _get(self, name: str) -> dict[str, Any] | None:
        try:
            with translated(f"read IP reservation {name}"):
                obj: dict[str, Any] = await self._objects.get_cluster_custom_object(
                    GROUP, VERSION, PLURAL, name
                )
            return obj
        except NotFound:
            return None
        except ApiError as exc:
            raise AllocationError(f"cannot read IP reservation {name}: {_reason(exc)}") from exc

    async def list_network(self, network: str) -> list[dict[str, Any]]:
        try:
            result = await _retry_busy(
                lambda: self._objects.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, field_selector=f"spec.network={network}"
                )
            )
        except ApiError as exc:
            raise AllocationError(
                f"cannot list IP reservations of network {network}: {_reason(exc)}"
            ) from exc
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def reserve_from_pool(self, network: str, pool: ipam.Pool, holder: Holder) -> IPAddress:
        """A free address of the pool, now reserved for `holder`; AllocationError when none is
        left. Known-taken addresses (one list call) are skipped without a create attempt."""
        taken: set[str] = set()
        for item in await self.list_network(network):
            spec = item.get("spec") or {}
            if holder.owns(spec):
                address = ipam.parse_address(spec["address"])
                if pool.usable(address):
                    return address
            taken.add(str(spec.get("address")))
        key = f"{holder.claim.uid}/{holder.request}/{holder.device}"
        for address in ipam.candidates(pool, key):
            if str(address) in taken:
                continue
            if await self._try(network, address, holder) is None:
                log.info(
                    "reserved address",
                    extra={"claim": str(holder.claim), "network": network, "address": str(address)},
                )
                return address
        raise AllocationError(
            f"{holder.where}: network {network}: no free address in {pool.subnet} "
            "(addresses are unique across the cluster: networks with overlapping pools share them)"
        )

    async def reserve_static(self, network: str, address: IPAddress, holder: Holder) -> None:
        """Reserve an address the claim config asks for; AllocationError when another holds it."""
        other = await self._try(network, address, holder)
        if other is not None:
            raise AllocationError(
                f"{holder.where}: network {network}: static address {address} is already "
                f"reserved by {_holder_text(other)}"
            )

    async def release(self, addresses: Iterable[str], claim_uid: str, node: str) -> None:
        """Delete the reservations of these addresses that this claim holds on this node;
        missing ones and those of other claims or nodes are left alone."""
        for text in addresses:
            name = ipam.reservation_name(ipam.parse_address(text))
            obj = await self._get(name)
            if obj is None:
                continue
            spec = obj.get("spec") or {}
            holder = (spec.get("claim") or {}).get("uid"), spec.get("node")
            if holder != (claim_uid, node):
                log.warning(
                    "reservation now held by another claim or node, not releasing it",
                    extra={
                        "reservation": name,
                        "claim_uid": claim_uid,
                        "holder_claim_uid": holder[0],
                        "holder_node": holder[1],
                    },
                )
                continue
            await _delete(self._objects, name, obj["metadata"]["uid"])


async def _delete(objects: client.CustomObjectsApi, name: str, uid: str) -> bool:
    """Delete exactly this incarnation of the object (UID precondition). False if already gone."""
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    try:
        with translated(f"delete IP reservation {name}"):
            await objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name, body=options)
        return True
    except (NotFound, Conflict):
        return False
    except ApiError as exc:
        raise AllocationError(f"cannot delete IP reservation {name}: {_reason(exc)}") from exc


#: After a 429/5xx: 0.2, 0.4, 0.8, 1.6 s (five attempts in three seconds).
_BUSY_BACKOFF = Backoff(initial=0.2, cap=3.2)


def _busy(exc: Exception) -> bool:
    return isinstance(exc, ApiError) and (exc.status == 429 or exc.status >= 500)


async def _retry_busy(call: Callable[[], Awaitable[Any]], attempts: int = 5) -> Any:
    """Retry an API call the server answered with 429 or 5xx (a restarting apiserver answers
    429 until its watch cache is built): a prepare should not fail on a second's hiccup."""

    async def attempt() -> Any:
        with translated("IP reservations"):
            return await call()

    return await retrying(attempt, attempts=attempts, backoff=_BUSY_BACKOFF, retry_on=_busy)


def _reason(exc: ApiError) -> str:
    return f"{exc.status} {exc.reason}".strip()


async def collect_orphaned_reservations(api: client.ApiClient) -> list[str]:
    """Delete reservations whose claim is gone (or was recreated, or no longer holds the device
    on that node): what a node that died before unpreparing leaves behind. Returns the names
    deleted. Safe to run at any time and from several places: deletes carry a UID precondition."""
    objects = client.CustomObjectsApi(api)
    resource = client.ResourceV1Api(api)
    try:
        with translated("list IP reservations"):
            listing = await objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    except ApiError as exc:
        raise AllocationError(f"cannot list IP reservations: {_reason(exc)}") from exc
    claims: dict[tuple[str, str], dict[str, Any] | None] = {}
    deleted: list[str] = []
    for item in listing.get("items") or ():
        spec = item.get("spec") or {}
        ref = spec.get("claim") or {}
        key = (str(ref.get("namespace")), str(ref.get("name")))
        if key not in claims:
            claims[key] = await _read_claim(resource, api, *key)
        if ipam.still_held(claims[key], spec):
            continue
        name = item["metadata"]["name"]
        if await _delete(objects, name, item["metadata"]["uid"]):
            log.info(
                "deleted orphaned IP reservation",
                extra={"reservation": name, "claim": "/".join(key), "node": spec.get("node")},
            )
            deleted.append(name)
    return deleted


async def _read_claim(
    resource: client.ResourceV1Api, api: client.ApiClient, namespace: str, name: str
) -> dict[str, Any] | None:
    try:
        with translated(f"read claim {namespace}/{name}"):
            claim = await resource.read_namespaced_resource_claim(name, namespace)
    except NotFound:
        return None
    except ApiError as exc:
        raise AllocationError(f"cannot read claim {namespace}/{name}: {_reason(exc)}") from exc
    doc: dict[str, Any] = api.sanitize_for_serialization(claim)
    return doc
