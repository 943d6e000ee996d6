"""The PodNetwork object (``multinetwork.networking.k8s.io/v1alpha1``), vendor neutral.

``spec.enabled`` (default true), ``spec.provider`` (immutable; a DNS subdomain, optionally then
``/path``), ``spec.parameters`` (free-form here; our provider's are validated by ``parameters``),
``status.conditions`` (metav1.Condition list keyed by type, at most 8).

These models are the single source of the CRD schema: ``crd.manifest()`` converts their JSON schema,
so constraints written here (patterns, lengths, defaults, CEL rules via ``json_schema_extra``) are
the ones the apiserver enforces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from multinet.api import fields, names, problems

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SEGMENT = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
PROVIDER_PATTERN = rf"^{_LABEL}(\.{_LABEL})*(/{_SEGMENT})*$"
"""A DNS subdomain (RFC 1123 labels), then optional ``/segment``s: ``multinet.dev/sriov``."""

CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


PARAMETERS_DESCRIPTION = (
    "provider-specific settings, validated by the provider's controller. "
    f"For {names.PROVIDER}: at most {fields.MAX_INTERFACE_NAMES} interfaces.names, "
    f"{fields.MAX_ROUTES} routes and {fields.MAX_EXCLUDE} ipam.exclude entries (its claim config: "
    f"at most {fields.MAX_ADDRESSES} addresses and {fields.MAX_ROUTES} routes, so it fits the "
    "apiserver's 10 KiB limit for opaque config)"
)
"""Free-form for the apiserver (parameters belong to the provider), so the CRD can only state
our list bounds in words; ``parameters.parse`` enforces them."""


def is_ours(provider: object) -> bool:
    """True for exactly ``multinet.dev`` or ``multinet.dev/<anything>``."""
    return isinstance(provider, str) and (
        provider == names.PROVIDER or provider.startswith(names.PROVIDER + "/")
    )


class _Schema(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class PodNetworkSpec(_Schema):
    """Desired state of a PodNetwork."""

    enabled: Annotated[
        bool, Field(description="false takes the network out of service without deleting it")
    ] = True
    provider: Annotated[
        str,
        Field(
            max_length=253,
            pattern=PROVIDER_PATTERN,
            description="the implementation serving this network, e.g. multinet.dev; immutable",
            json_schema_extra={
                "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "provider is immutable"}
                ]
            },
        ),
    ]
    parameters: Annotated[
        dict[str, Any] | None,
        Field(
            description=PARAMETERS_DESCRIPTION,
            json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        ),
    ] = None


class Condition(_Schema):
    """metav1.Condition."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: Literal["True", "False", "Unknown"]
    observed_generation: Annotated[
        int | None, Field(ge=0, json_schema_extra={"format": "int64"})
    ] = None
    last_transition_time: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[str, Field(max_length=32768)]


class PodNetworkStatus(_Schema):
    """Observed state, written by the provider's controller (and possibly others)."""

    conditions: Annotated[
        list[Condition],
        Field(
            max_length=8,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = []


class ObjectMeta(BaseModel):
    """The few metadata fields the controller reads."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)

    name: str
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    deletion_timestamp: str | None = None
    finalizers: list[str] = []


class PodNetwork(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)

    api_version: str = names.API_VERSION
    kind: str = names.KIND
    metadata: ObjectMeta
    spec: PodNetworkSpec
    status: PodNetworkStatus = PodNetworkStatus()

    @property
    def ours(self) -> bool:
        return is_ours(self.spec.provider)

    @property
    def deleting(self) -> bool:
        return self.metadata.deletion_timestamp is not None


def parse(body: Any) -> PodNetwork:
    """A PodNetwork as read from the apiserver; ``ConfigError`` if it does not fit the schema."""
    try:
        return PodNetwork.model_validate(body)
    except ValidationError as exc:
        problems.fail(problems.messages(exc, ""))
