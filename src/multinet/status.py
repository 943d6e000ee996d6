"""What users read about an attached interface: the claim's `status.devices` and the pod annotation.

Pure: builds the server-side-apply body for a ResourceClaim's status and the Multus-compatible
`k8s.v1.cni.cncf.io/network-status` pod annotation. The adapter in `kube.status` sends them.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multinet import DRIVER_NAME
from multinet.plans import AttachPlan, ClaimRef

#: The annotation Multus writes; tools that read it (monitoring, service meshes) keep working.
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"


@dataclass(frozen=True)
class DeviceOutcome:
    """How one plan ended inside the pod: the facts that go into status and annotation."""

    plan: AttachPlan
    ready: bool
    interface_name: str = ""
    mac: str = ""
    ips: tuple[str, ...] = ()  # CIDR form
    reason: str = "InterfaceReady"
    message: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


def _condition(outcome: DeviceOutcome) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True" if outcome.ready else "False",
        "reason": outcome.reason,
        "message": outcome.message[:32768],
        "lastTransitionTime": outcome.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def device_status(outcome: DeviceOutcome) -> dict[str, Any]:
    """One `status.devices[]` entry, keyed by driver/pool/device(/shareID) as the API requires."""
    plan = outcome.plan
    entry: dict[str, Any] = {
        "driver": plan.driver,
        "pool": plan.pool,
        "device": plan.device,
        "conditions": [_condition(outcome)],
        "data": {"podNetwork": plan.network, **applied(plan)},
    }
    if plan.share_id:
        entry["shareID"] = plan.share_id
    if outcome.ready:
        network_data: dict[str, Any] = {"interfaceName": outcome.interface_name}
        if outcome.ips:
            network_data["ips"] = list(outcome.ips[:16])
        if outcome.mac:
            network_data["hardwareAddress"] = outcome.mac
        entry["networkData"] = network_data
    return entry


def applied(plan: AttachPlan) -> dict[str, Any]:
    """What the plan set beyond addresses, as the claim's ``status.devices[].data`` shows it
    (only what is set): routes, rules, neighbours, sysctls, ethtool features, default route."""
    out: dict[str, Any] = {}
    if plan.routes:
        out["routes"] = [
            r.model_dump(exclude_none=True, exclude_defaults=True) for r in plan.routes
        ]
    if plan.rules:
        out["rules"] = [r.model_dump(exclude_none=True) for r in plan.rules]
    if plan.neighbors:
        out["neighbors"] = [n.model_dump() for n in plan.neighbors]
    if plan.sysctls:
        out["sysctls"] = {s.key: s.value for s in plan.sysctls}
    if plan.features:
        out["ethtool"] = {"features": dict(plan.features)}
    if plan.default_route:
        out["defaultRoute"] = list(plan.default_gateways) or True
    return out


def claim_status_apply(claim: ClaimRef, outcomes: list[DeviceOutcome]) -> dict[str, Any]:
    """The apply configuration for a claim's status: every device of ours on this claim.

    Server-side apply with our field manager owns exactly these entries: an entry we stop
    sending is removed, entries of other drivers are never touched.
    """
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": claim.name, "namespace": claim.namespace, "uid": claim.uid},
        "status": {"devices": [device_status(o) for o in outcomes]},
    }


def network_status_annotation(existing: str | None, outcomes: list[DeviceOutcome]) -> str:
    """The network-status annotation value with our interfaces, keeping other writers' entries.

    Entries are Multus-shaped: `name` (the network), `interface`, `ips` (without prefix length),
    `mac`. An earlier entry of ours for the same interface is replaced.
    """
    ours = [o for o in outcomes if o.ready]
    names = {o.interface_name for o in ours}
    kept: list[dict[str, Any]] = []
    if existing:
        try:
            parsed = json.loads(existing)
        except ValueError:
            parsed = []
        if isinstance(parsed, list):
            kept = [
                e
                for e in parsed
                if isinstance(e, dict)
                and not (e.get("driver") == DRIVER_NAME and e.get("interface") in names)
            ]
    for o in ours:
        kept.append(
            {
                "name": o.plan.network,
                "interface": o.interface_name,
                "ips": [str(ipaddress.ip_interface(ip).ip) for ip in o.ips],
                "mac": o.mac,
                "driver": DRIVER_NAME,
            }
        )
    return json.dumps(kept, separators=(",", ":"))
