"""Which PodNetworks take part in binding, read from their raw API objects. Pure.

A network binds devices only while it is ours (provider ``multinet.dev``), enabled, not being
deleted, Ready (its controller validated it), and its parameters still parse. Anything else
makes its devices lose the podNetwork attribute at the next publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet.api import conditions, parameters, podnetwork
from multinet.devices.binding import NetworkSelector
from multinet.errors import ConfigError


@dataclass(frozen=True)
class Verdict:
    name: str
    selector: NetworkSelector | None  # None: the network binds nothing now
    reason: str  # why not, for logs ("" when usable)


def judge(body: Any) -> Verdict | None:
    """None for objects that are not ours (or unreadable without a name).

    Total over any JSON value: a malformed object becomes a Verdict that binds nothing and says
    why, so one bad PodNetwork never stops the others from being judged.
    """
    name = name_of(body)
    try:
        net = podnetwork.parse(body)
    except ConfigError as exc:
        return Verdict(name, None, f"invalid object: {exc}") if name else None
    if not net.ours:
        return None
    if net.deleting:
        return Verdict(name, None, "being deleted")
    if not net.spec.enabled:
        return Verdict(name, None, "disabled")
    raw_conditions = [c.model_dump(by_alias=True) for c in net.status.conditions]
    if not conditions.is_true(raw_conditions, "Ready"):
        return Verdict(name, None, "not Ready")
    try:
        params = parameters.parse(net.spec.parameters)
    except ConfigError as exc:
        return Verdict(name, None, f"invalid parameters: {exc}")
    selector = NetworkSelector(
        name=name,
        interfaces=tuple(str(n) for n in params.interfaces.names),
        mode=params.mode,
        shared=params.shares_parent,
        max_interfaces=params.parent_capacity,
    )
    return Verdict(name, selector, "")


def name_of(body: Any) -> str:
    """``metadata.name`` when it is a non-empty string, else ""."""
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""
