"""Pure: what NodePrepareResources reads from a ResourceClaim document (no I/O).

Replicates the upstream kubelet-plugin helper's checks: the claim must be allocated and have the
UID the kubelet named; only results for our driver count; a subrequest name `req/sub` is
reported to the kubelet as `req`; `shareID` travels as `share_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet import DRIVER_NAME
from multinet.api.claimconfig import OpaqueConfig, split_allocation_configs
from multinet.errors import ClaimError
from multinet.plans import ClaimRef


@dataclass(frozen=True)
class Result:
    """One `status.allocation.devices.results[]` entry of our driver."""

    request: str  # as allocated, possibly "req/sub": configs are matched against it
    pool: str
    device: str
    share_id: str | None

    @property
    def request_name(self) -> str:
        """The name the kubelet expects back: the subrequest part stripped."""
        return self.request.split("/", 1)[0]


@dataclass(frozen=True)
class PodRef:
    name: str
    uid: str


@dataclass(frozen=True)
class Allocation:
    results: tuple[Result, ...]
    class_configs: tuple[OpaqueConfig, ...]
    claim_configs: tuple[OpaqueConfig, ...]
    pods: tuple[PodRef, ...]  # status.reservedFor entries that are pods


def parse(doc: Mapping[str, Any] | None, claim: ClaimRef) -> Allocation:
    """ClaimError when the claim is gone, was recreated (other UID) or is not allocated."""
    if doc is None:
        raise ClaimError(f"claim {claim}: not found in the API")
    uid = (doc.get("metadata") or {}).get("uid")
    if uid != claim.uid:
        raise ClaimError(
            f"claim {claim}: metadata.uid is {uid}, the kubelet asked for {claim.uid} "
            "(the claim was deleted and recreated)"
        )
    status = doc.get("status") or {}
    allocation = status.get("allocation")
    if not allocation:
        raise ClaimError(
            f"claim {claim}: status.allocation is missing (the claim is not allocated)"
        )
    devices = allocation.get("devices") or {}
    results = tuple(
        Result(
            request=str(r.get("request", "")),
            pool=str(r.get("pool", "")),
            device=str(r.get("device", "")),
            share_id=r.get("shareID"),
        )
        for r in devices.get("results") or ()
        if r.get("driver") == DRIVER_NAME
    )
    from_class, from_claim = split_allocation_configs(devices.get("config") or ())
    pods = tuple(
        PodRef(name=str(r.get("name", "")), uid=str(r.get("uid", "")))
        for r in status.get("reservedFor") or ()
        if r.get("resource") == "pods" and not r.get("apiGroup")
    )
    return Allocation(results, tuple(from_class), tuple(from_claim), pods)
