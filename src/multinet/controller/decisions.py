"""Pure reconcile decisions for one PodNetwork: no I/O, plain values in, plain values out.

- ``readiness``: Ready=True/Ready, or False with AdministrativelyDisabled / ParametersInvalid
  (message = every validation error).
- ``device_class_action`` / ``device_class_body``: the DeviceClass named after the network, owned by
  it; a same-named class we do not own is ``taken`` and left alone.
- ``claims_using``: which ResourceClaims still hold devices of the network (the in-use finalizer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from multinet.api import names, parameters
from multinet.api.conditions import Desired
from multinet.api.podnetwork import PodNetwork
from multinet.errors import ConfigError

READY = "Ready"
DEVICE_CLASS_READY = "DeviceClassReady"
MANAGED_BY = {"app.kubernetes.io/managed-by": "multinet-controller"}
SHOWN_CLAIMS = 5  # how many claim names a Deleting message lists

DeviceClassAction = Literal["create", "update", "keep", "taken"]


def readiness(pnw: PodNetwork) -> Desired:
    gen = pnw.metadata.generation
    if not pnw.spec.enabled:
        return Desired(READY, "False", "AdministrativelyDisabled", "spec.enabled is false", gen)
    try:
        parameters.parse(pnw.spec.parameters)
    except ConfigError as exc:
        return Desired(READY, "False", "ParametersInvalid", "; ".join(exc.errors), gen)
    return Desired(READY, "True", "Ready", "parameters are valid and the network is enabled", gen)


def deleting(pnw: PodNetwork, users: list[str]) -> Desired:
    shown = ", ".join(users[:SHOWN_CLAIMS])
    more = f" and {len(users) - SHOWN_CLAIMS} more" if len(users) > SHOWN_CLAIMS else ""
    message = (
        f"deletion waits for {len(users)} ResourceClaim(s) holding devices of this network: "
        f"{shown}{more}"
    )
    return Desired(READY, "False", "Deleting", message, pnw.metadata.generation)


def selector_expression(network: str) -> str:
    """CEL for devices of ``network``. Looking up a missing attribute is an evaluation error that
    aborts allocation, so the ``in`` test guards the lookup (unbound NICs lack the attribute)."""
    attrs = f'device.attributes["{names.ATTRIBUTE_DOMAIN}"]'
    return (
        f'device.driver == "{names.DRIVER}" && "{names.ATTRIBUTE_NAME}" in {attrs} '
        f'&& {attrs}.{names.ATTRIBUTE_NAME} == "{network}"'
    )


def device_class_body(pnw: PodNetwork) -> dict[str, Any]:
    return {
        "apiVersion": names.RESOURCE_API,
        "kind": "DeviceClass",
        "metadata": {
            "name": pnw.metadata.name,
            "labels": dict(MANAGED_BY),
            "ownerReferences": [owner_reference(pnw)],
        },
        "spec": {"selectors": [{"cel": {"expression": selector_expression(pnw.metadata.name)}}]},
    }


def owner_reference(pnw: PodNetwork) -> dict[str, Any]:
    # No blockOwnerDeletion: it would need update on podnetworks/finalizers for no benefit.
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": pnw.metadata.name,
        "uid": pnw.metadata.uid,
        "controller": True,
    }


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("kind") == names.KIND for r in refs)


def device_class_action(existing: Mapping[str, Any] | None, pnw: PodNetwork) -> DeviceClassAction:
    if existing is None:
        return "create"
    if not owned_by(existing, pnw.metadata.uid):
        return "taken"
    want = device_class_body(pnw)["spec"]
    return "keep" if existing.get("spec", {}).get("selectors") == want["selectors"] else "update"


def device_class_condition(action: DeviceClassAction, pnw: PodNetwork) -> Desired:
    gen, name = pnw.metadata.generation, pnw.metadata.name
    if action == "taken":
        return Desired(
            DEVICE_CLASS_READY,
            "False",
            "NameTaken",
            f"DeviceClass {name} exists and is not owned by this PodNetwork; left alone",
            gen,
        )
    return Desired(
        DEVICE_CLASS_READY, "True", "Owned", f"DeviceClass {name} selects this network", gen
    )


def _device_networks(slices: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(pool, device) -> podNetwork attribute, for our driver's devices."""
    out: dict[tuple[str, str], str] = {}
    for sl in slices:
        spec = sl.get("spec") or {}
        if spec.get("driver") != names.DRIVER:
            continue
        pool = (spec.get("pool") or {}).get("name", "")
        for dev in spec.get("devices") or []:
            value = ((dev.get("attributes") or {}).get(names.ATTRIBUTE) or {}).get("string")
            if value:
                out[(pool, dev.get("name", ""))] = value
    return out


def _request_classes(claim: Mapping[str, Any]) -> dict[str, str]:
    """request (and "request/sub") name -> deviceClassName in the claim spec."""
    out: dict[str, str] = {}
    for req in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
        exactly = req.get("exactly") or {}
        if exactly.get("deviceClassName"):
            out[req.get("name", "")] = exactly["deviceClassName"]
        for sub in req.get("firstAvailable") or []:
            if sub.get("deviceClassName"):
                out[f"{req.get('name', '')}/{sub.get('name', '')}"] = sub["deviceClassName"]
    return out


def claim_uses(
    claim: Mapping[str, Any], network: str, device_networks: Mapping[tuple[str, str], str]
) -> bool:
    """Does ``claim`` hold a device of ``network``? Any of three signs is enough:
    the node agent wrote ``status.devices[].data.podNetwork``; the allocated device carries the
    attribute in its ResourceSlice; or it was allocated through the network's own DeviceClass
    (the attribute may already be gone from the slice while the network is being deleted)."""
    status = claim.get("status") or {}
    for dev in status.get("devices") or []:
        data = dev.get("data") or {}
        if dev.get("driver") == names.DRIVER and data.get(names.CLAIM_DATA_KEY) == network:
            return True
    results = ((status.get("allocation") or {}).get("devices") or {}).get("results") or []
    classes = _request_classes(claim)
    for res in results:
        if res.get("driver") != names.DRIVER:
            continue
        if device_networks.get((res.get("pool", ""), res.get("device", ""))) == network:
            return True
        if classes.get(res.get("request", "")) == network:
            return True
    return False


def claims_using(
    network: str, claims: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Sorted ``namespace/name`` of the claims holding devices of ``network``."""
    devices = _device_networks(slices)
    out = []
    for claim in claims:
        meta = claim.get("metadata") or {}
        if claim_uses(claim, network, devices):
            out.append(f"{meta.get('namespace', '')}/{meta.get('name', '')}")
    return sorted(out)


def event_type(desired: Desired) -> str:
    if desired.status == "True" or desired.reason in (
        "AdministrativelyDisabled",
        "Deleting",
        "NoDevices",
    ):
        return "Normal"
    return "Warning"


def needs_finalizer(pnw: PodNetwork) -> bool:
    return not pnw.deleting and names.FINALIZER not in pnw.metadata.finalizers


def holds_finalizer(pnw: PodNetwork) -> bool:
    return names.FINALIZER in pnw.metadata.finalizers
