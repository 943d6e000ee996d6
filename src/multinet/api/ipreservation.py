"""The IPReservation object of pool IPAM (``multinet.dev/v1alpha1``): one per reserved address.

The agent writes it on prepare and deletes it on unprepare (``multinet.kube.ipam``); the pure
decisions about it (who holds it, is it orphaned) are in ``multinet.ipam``. The CRD in
``deploy/base/crd-ipreservation.yaml`` is written by hand, because it carries printer columns,
selectable fields and comments a generator would lose; a unit test checks its ``spec`` schema
equals the one ``multinet.api.crd.schema_of`` derives from these models, so neither drifts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Kubernetes' own bounds: a namespace is a DNS label, names are DNS subdomains, UIDs are short.
_NAMESPACE = 63
_NAME = 253
_UID = 128
_ADDRESS = 45  # the longest textual IPv6 address (with an embedded IPv4 part)


class ReservedClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(max_length=_NAMESPACE)
    name: str = Field(max_length=_NAME)
    uid: str = Field(max_length=_UID)


class ReservedPod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=_NAME)
    uid: str | None = Field(default=None, max_length=_UID)


class IPReservationSpec(BaseModel):
    """Who holds the address. Immutable; release by deleting the object."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "spec is immutable"},
            ]
        },
    )

    network: str = Field(description="The PodNetwork the pool belongs to.", max_length=_NAME)
    address: str = Field(
        description="The reserved IP address, without prefix length.", max_length=_ADDRESS
    )
    claim: ReservedClaim
    request: str | None = Field(
        default=None, description="The claim request the address is for.", max_length=_NAME
    )
    device: str | None = Field(
        default=None, description="The allocated device the address goes on.", max_length=_NAME
    )
    pod: ReservedPod | None = Field(
        default=None,
        description="The first pod reserving the claim when the address was taken.",
    )
    node: str = Field(description="The node whose agent reserved the address.", max_length=_NAME)
