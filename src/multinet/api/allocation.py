"""Pure: what NodePrepareResources reads from a ResourceClaim document (no I/O).

Replicates the upstream kubelet-plugin helper's checks: the claim must be allocated and have the
UID the kubelet named; only results for our driver count; a subrequest name `req/sub` is
reported to the kubelet as `req`; `shareID` travels as `share_id`. The fields read are
type-checked first: a claim of the wrong shape is a ConfigError naming the field, not a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationError

from multinet.api import names, problems
from multinet.api.claimconfig import (
    AllocatedConfig,
    ApiShape,
    OpaqueConfig,
    split_allocation_configs,
)
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


class _Result(ApiShape):
    driver: str = ""
    request: str = ""
    pool: str = ""
    device: str = ""
    share_id: Annotated[str | None, Field(alias="shareID")] = None


class _Devices(ApiShape):
    results: list[_Result] | None = None
    config: list[AllocatedConfig] | None = None


class _Allocation(ApiShape):
    devices: _Devices | None = None


class _Consumer(ApiShape):
    api_group: str | None = None
    resource: str = ""
    name: str = ""
    uid: str = ""


class _Status(ApiShape):
    allocation: _Allocation | None = None
    reserved_for: list[_Consumer] | None = None


class _Metadata(ApiShape):
    uid: str | None = None


class _Claim(ApiShape):
    """The parts of a ResourceClaim this module reads."""

    metadata: _Metadata | None = None
    status: _Status | None = None


def parse(doc: Any, claim: ClaimRef) -> Allocation:
    """ClaimError when the claim is gone, was recreated (other UID) or is not allocated;
    ConfigError naming every field whose type is wrong (``status.allocation.devices.results``)."""
    if doc is None:
        raise ClaimError(f"claim {claim}: not found in the API")
    if not isinstance(doc, Mapping):
        shown = problems.show(doc)
        problems.fail([f"ResourceClaim: must be an object, got {shown}"], subject=f"claim {claim}")
    try:
        shape = _Claim.model_validate(doc)
    except ValidationError as exc:
        problems.fail(problems.messages(exc, ""), subject=f"claim {claim}")
    uid = shape.metadata.uid if shape.metadata else None
    if uid != claim.uid:
        raise ClaimError(
            f"claim {claim}: metadata.uid is {uid}, the kubelet asked for {claim.uid} "
            "(the claim was deleted and recreated)"
        )
    status = shape.status or _Status()
    allocation = status.allocation
    # An allocation without any field we know (``{}``) is as good as none.
    if allocation is None or not allocation.model_fields_set:
        raise ClaimError(
            f"claim {claim}: status.allocation is missing (the claim is not allocated)"
        )
    devices = allocation.devices or _Devices()
    results = tuple(
        Result(request=r.request, pool=r.pool, device=r.device, share_id=r.share_id)
        for r in devices.results or ()
        if r.driver == names.DRIVER
    )
    from_class, from_claim = split_allocation_configs(devices.config)
    pods = tuple(
        PodRef(name=r.name, uid=r.uid)
        for r in status.reserved_for or ()
        if r.resource == "pods" and not r.api_group
    )
    return Allocation(results, tuple(from_class), tuple(from_claim), pods)
